package sign

import "golang.org/x/sys/unix"

// adviseHugePages asks Linux to back b with transparent huge pages, where
// the system leaves them to madvise (the default of many distributions).
//
// scrypt writes its 32 MiB table once, front to back: in pages of 4 KiB
// that is 8,192 page faults, which on a virtual machine cost as much as a
// third of the key's time (BenchmarkScryptKey here: 0.24 s, 0.155 s with
// huge pages). Where huge pages are off, or the advice is refused, the
// table is what it was.
func adviseHugePages(b []byte) {
	unix.Madvise(b, unix.MADV_HUGEPAGE) //nolint:errcheck // advice: refused, it changes nothing
}
