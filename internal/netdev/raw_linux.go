package netdev

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawFile returns the kernel TUN's file when it exchanges packets with a virtio-net header
// (IFF_VNET_HDR, which golang.zx2c4.com/wireguard/tun sets up with TSO offloads), else nil.
func rawFile(d *Device) *os.File {
	if d.Net != nil {
		return nil
	}
	f := d.Device.File()
	if f == nil {
		return nil
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	var flags uint16
	cerr := sc.Control(func(fd uintptr) {
		ifr, err := unix.NewIfreq(d.Name)
		if err != nil {
			return
		}
		if unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr) == nil {
			flags = ifr.Uint16()
		}
	})
	if cerr != nil || flags&unix.IFF_VNET_HDR == 0 {
		return nil
	}
	return f
}

// ReadRaw reads one packet as the kernel hands it over: its 10-byte virtio-net header, then the
// packet, which may be a TCP or UDP burst of up to 64 KiB to be segmented (internal/virtio). Only for a
// device with Raw; it must not be mixed with Read.
func (d *Device) ReadRaw(buf []byte) (int, error) {
	if d.raw == nil {
		return 0, errNotRaw
	}
	n, err := d.raw.Read(buf)
	if errors.Is(err, syscall.EBADFD) {
		err = os.ErrClosed
	}
	return n, err
}

// ReadRawNow is ReadRaw without waiting: it returns 0 and no error when the kernel has no packet
// queued. A reader uses it to take what is already waiting after a ReadRaw, so that small packets
// leave in batches. Like ReadRaw it belongs to one reading goroutine.
func (d *Device) ReadRawNow(buf []byte) (int, error) {
	if d.raw == nil {
		return 0, errNotRaw
	}
	r := &d.now
	if r.conn == nil {
		sc, err := d.raw.SyscallConn()
		if err != nil {
			return 0, os.ErrClosed
		}
		r.conn, r.attempt = sc, r.readOnce // made once: a fresh closure per call would allocate
	}
	r.buf = buf
	err := r.conn.Read(r.attempt)
	r.buf = nil
	switch {
	case err != nil, errors.Is(r.err, syscall.EBADFD):
		return 0, os.ErrClosed
	case errors.Is(r.err, unix.EAGAIN):
		return 0, nil
	case r.err != nil:
		return 0, fmt.Errorf("TUN read: %w", r.err)
	}
	return r.n, nil
}

// nowReader is ReadRawNow's state.
type nowReader struct {
	conn    syscall.RawConn
	attempt func(fd uintptr) bool
	buf     []byte
	n       int
	err     error
}

// readOnce makes one read(2) on the TUN's file, which is non-blocking (the tun package hands it to
// Go's poller); returning true tells the poller not to wait.
func (r *nowReader) readOnce(fd uintptr) bool {
	r.n, r.err = unix.Read(int(fd), r.buf)
	return true
}

// WriteRaw writes one packet with its virtio-net header in front, which the kernel takes as it is: a
// whole TCP burst is one write. The header must have passed virtio.Header.Check. Only for a device
// with Raw.
func (d *Device) WriteRaw(frame []byte) error {
	if d.raw == nil {
		return errNotRaw
	}
	if _, err := d.raw.Write(frame); err != nil {
		if errors.Is(err, syscall.EBADFD) {
			return os.ErrClosed
		}
		return fmt.Errorf("TUN write: %w", err)
	}
	return nil
}
