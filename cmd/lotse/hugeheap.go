package main

import (
	"bytes"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/lotse/lotse/internal/hugepages"
)

// Page faults are a large part of what a release costs: the Go runtime
// maps its heap in pages of 4 KiB and gives them no huge-page advice, so
// a release touches its 150-400 MiB of heap one page at a time: 45,000
// faults for a warm release of a many-file Debian image, at 5-10 µs each
// on a virtual machine, with the TLB misses that follow. Linux backs
// memory with transparent huge pages of 2 MiB where a program asks
// (madvise MADV_HUGEPAGE), and most distributions leave huge pages to
// that advice. growHugeHeap grows the heap once, at start, by address
// space that carries the advice; the runtime then allocates from it
// before it maps more. Measured on the bench's images (medians,
// interleaved): a warm release of debian-files 1.32 s -> 0.9 s, a cold
// one of go-toolchain 3.6 s -> 3.05 s, with a third less CPU. The heap
// then seldom grows, and the runtime returns free memory mostly as it
// grows: a cold release's peak rose by about 20 MB, which a cold
// release's collector percentage takes back (coldGOGC, ci/gc.go).
//
// lotse is a command that runs for seconds. The runtime leaves huge pages
// alone for good reasons that belong to long-running programs (memory
// returned to the system in pieces, which the kernel's khugepaged may fill
// again); lotsed does not do this.

// hugeHeapBytes is the address space the heap grows by: more than the
// heap of a cold release of the bench's largest image (about 360 MiB).
// It costs no memory: the runtime takes it from the system untouched,
// and a page is resident only once the heap uses it.
const hugeHeapBytes = 512 << 20

// hugeHeapWanted says whether growing the heap by n bytes with huge-page
// advice helps and is safe, from the system's transparent huge page mode
// (/sys/kernel/mm/transparent_hugepage/enabled), its overcommit mode
// (/proc/sys/vm/overcommit_memory), its memory (/proc/meminfo), whether
// the process's address space is limited (ulimit -v), and the runtime's
// GODEBUG settings:
//   - only in the "madvise" mode: with "always" the heap has huge pages
//     already, with "never" the advice does nothing;
//   - not under strict overcommit (mode 2), where untouched address space
//     counts against the system's commit limit;
//   - not on a system with less than 4n of memory, where the kernel's
//     overcommit heuristic could refuse the space and the runtime, which
//     cannot do without it, would stop lotse;
//   - not with a limit on the address space, where the runtime, which
//     reserves much of it, would run out sooner;
//   - not with GODEBUG=disablethp=1, the runtime's own switch for keeping
//     huge pages off its heap.
func hugeHeapWanted(n int, thp, overcommit, meminfo []byte, addressSpaceLimited bool, godebug string) bool {
	return bytes.Contains(thp, []byte("[madvise]")) &&
		string(bytes.TrimSpace(overcommit)) != "2" &&
		memTotal(meminfo) >= 4*int64(n) &&
		!addressSpaceLimited &&
		!slices.Contains(strings.Split(godebug, ","), "disablethp=1")
}

// growHugeHeap grows the heap by n bytes of address space advised to be
// backed by huge pages, if hugeHeapWanted says so (godebug is the
// GODEBUG variable), and says whether it did. It allocates the space and
// frees it at once; the runtime allocates from the lowest free addresses,
// that is from the rest of the heap that package initialisation left,
// and then from this space.
func growHugeHeap(n int, godebug string) (bool, error) {
	thp, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		return false, nil // a kernel without transparent huge pages
	}
	overcommit, err := os.ReadFile("/proc/sys/vm/overcommit_memory")
	if err != nil {
		return false, err
	}
	meminfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return false, err
	}
	limited, err := addressSpaceLimited()
	if err != nil {
		return false, err
	}
	if !hugeHeapWanted(n, thp, overcommit, meminfo, limited, godebug) {
		return false, nil
	}
	err = allocAdvised(n)
	// The space is free, and the collector's next goal set from the live
	// heap, only after a collection that found the allocation unreachable.
	// The one the allocation started may have found it live: it was on
	// this goroutine's stack while madvise ran. The collector then set
	// its goal from the 512 MiB and did not run again for the rest of the
	// release: the peak resident set doubled in one cold release in ten
	// to twenty.
	// runtime.GC waits for that collection and runs one more (about 7 ms
	// here, with the 11 MB that package initialisation leaves live).
	runtime.GC()
	return err == nil, err
}

// allocAdvised allocates n bytes, which the runtime takes from new address
// space, advises them to be backed by huge pages, and drops them.
func allocAdvised(n int) error {
	b := make([]byte, n)
	return hugepages.Advise(b)
}

// memTotal is MemTotal of a /proc/meminfo listing, in bytes; 0 if it has
// none.
func memTotal(meminfo []byte) int64 {
	for line := range bytes.Lines(meminfo) {
		if v, ok := bytes.CutPrefix(line, []byte("MemTotal:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
