package main

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// The Go runtime and the initialisation of lotse's 1,500 packages (syft,
// trivy and cosign are linked in) touch about 100 MB of the binary's
// read-only pages before main runs: each package's init code and the
// data it reads, and the kernel maps the 64 KiB around each page touched.
// A release then uses about half of them. The pages stay mapped, and a
// process's resident set (what a runner's memory figures and a bench's
// peak RSS count) includes them: on the small images they were more than
// half of lotse's peak. dropStartupPages (pages_linux.go) unmaps them once
// main runs; the kernel maps again, from the page cache, the ones the
// command goes on to use.

// span is a range of addresses, [start, end).
type span struct{ start, end uintptr }

// readOnlyMappings returns the read-only mappings of the file exe in a
// /proc/PID/maps listing: its program text and read-only data, never its
// writable data (which dropping would reset to the file's contents).
func readOnlyMappings(maps []byte, exe string) []span {
	var out []span
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// address perms offset dev inode pathname; only the pathname
		// holds a slash.
		line := sc.Text()
		i := strings.IndexByte(line, '/')
		if i < 0 || line[i:] != exe {
			continue
		}
		f := strings.Fields(line[:i])
		if len(f) != 5 || len(f[1]) != 4 || f[1][0] != 'r' || f[1][1] != '-' || f[1][3] != 'p' {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, span{uintptr(start), uintptr(end)})
	}
	return out
}

// traced says whether a /proc/PID/status listing names a tracer: a
// debugger's breakpoints are private copies of text pages, which
// dropping the pages would remove.
func traced(status []byte) bool {
	for line := range bytes.Lines(status) {
		if v, ok := bytes.CutPrefix(line, []byte("TracerPid:")); ok {
			return string(bytes.TrimSpace(v)) != "0"
		}
	}
	return false
}
