package main

import (
	"bytes"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
)

func TestReadOnlyMappings(t *testing.T) {
	maps := `00400000-01c00000 r--p 00000000 fd:01 4063 /usr/local/bin/lotse
01c00000-05000000 r-xp 01800000 fd:01 4063 /usr/local/bin/lotse
05000000-06000000 r--p 04c00000 fd:01 4063 /usr/local/bin/lotse
06000000-06200000 rw-p 05c00000 fd:01 4063 /usr/local/bin/lotse
06200000-06300000 rw-p 00000000 00:00 0 
06300000-06400000 ---p 00000000 fd:01 4063 /usr/local/bin/lotse
06400000-06500000 r--s 00000000 fd:01 4063 /usr/local/bin/lotse
06500000-06600000 r--p 00000000 fd:01 4064 /usr/local/bin/lotse.old
06600000-06700000 r--p 00000000 fd:01 4065 /usr/local/bin/lotse (deleted)
c000000000-c004000000 rw-p 00000000 00:00 0 
7ffd5c5e0000-7ffd5c601000 rw-p 00000000 00:00 0                          [stack]
7ffd5c7c7000-7ffd5c7c9000 r-xp 00000000 00:00 0                          [vdso]
zzz-06800000 r--p 00000000 fd:01 4063 /usr/local/bin/lotse
06900000-06800000 r--p 00000000 fd:01 4063 /usr/local/bin/lotse
`
	got := readOnlyMappings([]byte(maps), "/usr/local/bin/lotse")
	want := []span{{0x400000, 0x1c00000}, {0x1c00000, 0x5000000}, {0x5000000, 0x6000000}}
	if !slices.Equal(got, want) {
		t.Errorf("got %x, want %x: the program's text and read-only data, no writable, shared, inaccessible or other file's mapping", got, want)
	}
	got = readOnlyMappings([]byte(maps), "/usr/local/bin/lotse (deleted)")
	if want := []span{{0x6600000, 0x6700000}}; !slices.Equal(got, want) {
		t.Errorf("a replaced binary: got %x, want %x", got, want)
	}
	spaced := "00400000-00500000 r-xp 00000000 fd:01 7 /opt/my tools/lotse\n"
	if got := readOnlyMappings([]byte(spaced), "/opt/my tools/lotse"); len(got) != 1 {
		t.Errorf("a path with a space: got %x", got)
	}
}

func TestTraced(t *testing.T) {
	for status, want := range map[string]bool{
		"Name:\tlotse\nTracerPid:\t0\nUid:\t0\n":    false,
		"Name:\tlotse\nTracerPid:\t4711\nUid:\t0\n": true,
		"Name:\tlotse\n": false,
	} {
		if got := traced([]byte(status)); got != want {
			t.Errorf("traced(%q) = %v", status, got)
		}
	}
}

// written lives in the binary's writable data (initialised, not zero):
// dropping its mapping would reset it to the value in the file.
var written = []int{1, 2, 3}

func TestDropStartupPages(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc")
	}
	written[1] = 42
	before := rssFile(t)
	if err := dropStartupPages(); err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	t.Logf("file pages resident: %d MiB before, %d MiB after", before>>20, after>>20)
	if written[1] != 42 {
		t.Fatal("the writable data was dropped with the read-only pages")
	}
	// The test binary links what lotse links: its start-up alone maps
	// tens of MB, of which the test has used little since.
	if after > before/2 {
		t.Errorf("file pages resident: %d MiB before, %d MiB after", before>>20, after>>20)
	}
	runtime.GC() // the program goes on, its pages mapped again as it runs
	if err := dropStartupPages(); err != nil {
		t.Fatal(err)
	}
}

// rssFile is the process's resident file pages, in bytes.
func rssFile(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("RssFile:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
