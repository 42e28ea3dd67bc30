package hugepages

import (
	"runtime"
	"syscall"
	"testing"
)

func TestAdvise(t *testing.T) {
	if runtime.GOOS != "linux" {
		if err := Advise(make([]byte, 1)); err == nil {
			t.Fatal("Advise says it advised where there is no madvise(MADV_HUGEPAGE)")
		}
		return
	}
	b, err := syscall.Mmap(-1, 0, 4<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(b) //nolint:errcheck
	if err := Advise(b); err != nil {
		t.Fatal(err)
	}
	b[0], b[len(b)-1] = 1, 2 // still ordinary memory
	if err := Advise(b[1:]); err == nil {
		t.Error("Advise of an unaligned range: no error")
	}
}
