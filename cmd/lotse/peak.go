package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// peakStep is how much the resident set must grow past its highest before
// the heap profile is taken again.
const peakStep = 4 << 20

// startPeakProfile samples the process's resident set every 10 ms and,
// each time it is higher by peakStep than at the last profile, writes the
// heap profile to path, replacing the last: at the end, path holds the
// heap as it was near the peak RSS a benchmark reports (what was live at
// the collection before, and what had been allocated). The function it
// returns stops the sampling, closes the file and says, on stderr, at which
// resident set and when the profile was taken. It needs Linux's
// /proc/self/statm.
func startPeakProfile(path string, stderr io.Writer) (func(), error) {
	statm, err := os.Open("/proc/self/statm")
	if err != nil {
		return nil, fmt.Errorf("the resident set cannot be read here: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		statm.Close()
		return nil, err
	}
	runtime.MemProfileRate = 64 << 10
	p := &peakProfile{statm: statm, f: f, start: time.Now(), page: int64(os.Getpagesize())}
	p.sample() // the start: even a short command leaves a profile
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.sample()
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		p.sample()
		statm.Close()
		if err := f.Close(); err != nil && p.err == nil {
			p.err = err
		}
		if p.err != nil {
			fmt.Fprintf(stderr, "lotse: LOTSE_PEAKPROFILE: %v\n", p.err)
			return
		}
		fmt.Fprintf(stderr, "lotse: LOTSE_PEAKPROFILE: heap profile at %d MiB resident, after %s\n", p.taken>>20, p.when.Round(time.Millisecond))
	}, nil
}

type peakProfile struct {
	statm *os.File
	f     *os.File
	start time.Time
	page  int64
	taken int64         // the resident set at the profile in f
	when  time.Duration // since start
	buf   bytes.Buffer
	err   error
}

func (p *peakProfile) sample() {
	if p.err != nil {
		return
	}
	rss, err := p.resident()
	if err != nil {
		p.err = err
		return
	}
	if p.taken > 0 && rss < p.taken+peakStep {
		return
	}
	p.buf.Reset()
	if err := pprof.Lookup("heap").WriteTo(&p.buf, 0); err != nil {
		p.err = err
		return
	}
	if err := p.f.Truncate(0); err != nil {
		p.err = err
		return
	}
	if _, err := p.f.WriteAt(p.buf.Bytes(), 0); err != nil {
		p.err = err
		return
	}
	p.taken, p.when = rss, time.Since(p.start)
}

// resident is the resident set in bytes (statm's second field, in pages).
func (p *peakProfile) resident() (int64, error) {
	var b [128]byte
	n, err := p.statm.ReadAt(b[:], 0)
	if err != nil && err != io.EOF {
		return 0, err
	}
	fields := strings.Fields(string(b[:n]))
	if len(fields) < 2 {
		return 0, fmt.Errorf("/proc/self/statm: %q", b[:n])
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/self/statm: %w", err)
	}
	return pages * p.page, nil
}
