package main

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func TestHugeHeapWanted(t *testing.T) {
	const n = 512 << 20
	mem := func(kb int) string { return "MemTotal:       " + strconv.Itoa(kb) + " kB\nMemFree:  1000 kB\n" }
	for _, tc := range []struct {
		thp, overcommit, meminfo string
		limited                  bool
		godebug                  string
		want                     bool
	}{
		{"always [madvise] never\n", "0\n", mem(8 << 20), false, "", true},
		{"always [madvise] never\n", "1\n", mem(8 << 20), false, "", true},
		{"always [madvise] never\n", "0\n", mem(2 << 20), false, "", true}, // 4n
		{"always [madvise] never\n", "0\n", mem(8 << 20), false, "gctrace=1,disablethp=0", true},
		{"[always] madvise never\n", "0\n", mem(8 << 20), false, "", false}, // huge pages already
		{"always madvise [never]\n", "0\n", mem(8 << 20), false, "", false}, // the advice does nothing
		{"always [madvise] never\n", "2\n", mem(8 << 20), false, "", false}, // strict overcommit
		{"always [madvise] never\n", "0\n", mem(2<<20 - 1), false, "", false},
		{"always [madvise] never\n", "0\n", "MemFree: 1000 kB\n", false, "", false},
		{"always [madvise] never\n", "0\n", mem(8 << 20), true, "", false}, // ulimit -v
		{"always [madvise] never\n", "0\n", mem(8 << 20), false, "gctrace=1,disablethp=1", false},
		{"", "0\n", mem(8 << 20), false, "", false},
	} {
		if got := hugeHeapWanted(n, []byte(tc.thp), []byte(tc.overcommit), []byte(tc.meminfo), tc.limited, tc.godebug); got != tc.want {
			t.Errorf("hugeHeapWanted(%q, %q, %q, %v, %q) = %v, want %v", tc.thp, tc.overcommit, tc.meminfo, tc.limited, tc.godebug, got, tc.want)
		}
	}
}

// TestGrowHugeHeap checks what growHugeHeap is for: that the runtime
// allocates from the advised space once the heap below it is full.
func TestGrowHugeHeap(t *testing.T) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	const n = 256 << 20
	grown, err := growHugeHeap(n, "")
	if err != nil {
		t.Fatal(err)
	}
	if !grown {
		t.Skip("transparent huge pages are not in the madvise mode here, or the address space is limited")
	}
	// The collector's goal is set from the live heap, not from the
	// space growHugeHeap allocated and dropped.
	if goal := heapGoal(); goal > n/2 {
		t.Fatalf("after growHugeHeap, the collector's heap goal is %d MiB", goal>>20)
	}
	// Larger than the whole heap before: it cannot fit below the space.
	size := int(ms.HeapSys) + 8<<20
	if size > n {
		t.Fatalf("the test's heap (%d MiB) is too large for the test", ms.HeapSys>>20)
	}
	b := make([]byte, size)
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	// Its first pages may be the free end of the heap below the space
	// (a free run may span both); its last ones are in the space.
	last := addr + uintptr(size) - 1
	flags := vmFlags(t, last)
	runtime.KeepAlive(b)
	if !slices.Contains(strings.Fields(flags), "hg") {
		t.Errorf("the heap's new allocation at %#x-%#x ends in a mapping without huge-page advice (VmFlags: %s)", addr, last, flags)
	}
}

// heapGoal is the collector's heap goal, in bytes.
func heapGoal() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// vmFlags returns the VmFlags of the mapping holding addr, from
// /proc/self/smaps.
func vmFlags(t *testing.T, addr uintptr) string {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Text()
		if r, _, ok := strings.Cut(line, " "); ok && strings.Contains(r, "-") && !strings.HasSuffix(r, ":") {
			lo, hi, _ := strings.Cut(r, "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && uint64(addr) >= start && uint64(addr) < end
			continue
		}
		if v, ok := strings.CutPrefix(line, "VmFlags:"); ok && in {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return ""
}
