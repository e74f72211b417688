//go:build unix

package secfile

import "syscall"

// openNonblock is added to the flags of read's open so that opening a FIFO does not block.
const openNonblock = syscall.O_NONBLOCK
