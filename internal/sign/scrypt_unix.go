//go:build unix

package sign

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lotse/lotse/internal/hugepages"
)

// mapWords maps n zeroed 32-bit words from the operating system, outside
// the Go heap; release unmaps them.
func mapWords(n int) (words []uint32, release func(), err error) {
	b, err := unix.Mmap(-1, 0, 4*n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, fmt.Errorf("scrypt: map %d bytes: %w", 4*n, err)
	}
	// scrypt writes the table once, front to back: in pages of 4 KiB that
	// is 8,192 page faults for 32 MiB, which on a virtual machine cost as
	// much as a third of the key's time (BenchmarkScryptKey here: 0.24 s,
	// 0.155 s with huge pages). Refused advice leaves the table as it was.
	hugepages.Advise(b) //nolint:errcheck // advice: refused, it changes nothing
	// Mapped memory is page-aligned, so aligned for uint32.
	words = unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(b))), n)
	return words, func() { unix.Munmap(b) }, nil //nolint:errcheck // unmapping what was mapped fails only on a bad address
}
