//go:build !unix

package secfile

// openNonblock is zero where FIFOs cannot block open (or O_NONBLOCK does not exist).
const openNonblock = 0
