//go:build unix

package sign

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapWords maps n zeroed 32-bit words from the operating system, outside
// the Go heap; release unmaps them.
func mapWords(n int) (words []uint32, release func(), err error) {
	b, err := unix.Mmap(-1, 0, 4*n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, fmt.Errorf("scrypt: map %d bytes: %w", 4*n, err)
	}
	adviseHugePages(b)
	// Mapped memory is page-aligned, so aligned for uint32.
	words = unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(b))), n)
	return words, func() { unix.Munmap(b) }, nil //nolint:errcheck // unmapping what was mapped fails only on a bad address
}
