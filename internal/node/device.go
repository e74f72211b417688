package node

// Device is where overlay packets meet the host: a kernel TUN, a userspace network stack
// (internal/netdev), or a test's in-memory device. Its methods are those of wireguard-go's
// tun.Device that the node uses: batched reads and writes with offset bytes of headroom in front
// of each packet.
type Device interface {
	// Read reads up to len(bufs) packets, each at bufs[i][offset:], and their sizes.
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	// Write writes the packets at bufs[i][offset:].
	Write(bufs [][]byte, offset int) (int, error)
	BatchSize() int
	Close() error
}

// RawDevice is a Device that can also move whole offloaded packets with their virtio-net header (a
// kernel TUN with offloads, when Raw reports true), so that TCP bursts travel whole (burst.go).
type RawDevice interface {
	Device
	Raw() bool
	// ReadRaw waits for a frame; ReadRawNow returns 0 at once when none is queued.
	ReadRaw(buf []byte) (int, error)
	ReadRawNow(buf []byte) (int, error)
	WriteRaw(frame []byte) error
}
