//go:build !linux

package netdev

import "os"

type nowReader struct{}

func rawFile(*Device) *os.File { return nil }

// ReadRaw is for Linux kernel TUN devices only (see Raw).
func (d *Device) ReadRaw([]byte) (int, error) { return 0, errNotRaw }

// ReadRawNow is for Linux kernel TUN devices only (see Raw).
func (d *Device) ReadRawNow([]byte) (int, error) { return 0, errNotRaw }

// WriteRaw is for Linux kernel TUN devices only (see Raw).
func (d *Device) WriteRaw([]byte) error { return errNotRaw }
