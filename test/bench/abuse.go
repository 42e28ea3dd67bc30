package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// abuse measures what unauthenticated callers cost lotsed: the growth of its
// resident set while 40 clients at once send 25 MiB bodies with a wrong
// X-Gitlab-Token (target: under 50 MiB; lotsed checks the token before it
// reads a body), and, for comparison, with a bad Standard Webhooks
// signature, whose bodies must be read (bounded by its
// --unverified-body-budget, 64 MiB by default).
func abuse(ctx context.Context, lotsed string) error {
	dir, err := os.MkdirTemp("", "lotse-bench-abuse")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	simURL, bot, stopSim, err := startShopGitOps(filepath.Join(dir, "sim"))
	if err != nil {
		return err
	}
	defer stopSim()
	const clients, size = 40, 25 << 20
	fmt.Printf("\nlotsed under abuse, loopback: %d clients at once, each sending a %d MiB body that fails authentication:\n", clients, size>>20)
	fmt.Printf("%-24s %10s %10s %12s %10s   answers\n", "authentication", "RSS MiB", "peak MiB", "growth MiB", "after MiB")
	for i, run := range []struct {
		name string
		env  []string
		hdr  func() map[string]string
		note string
	}{
		{"wrong X-Gitlab-Token", []string{"LOTSE_WEBHOOK_SECRET=bench"},
			func() map[string]string {
				return map[string]string{"X-Gitlab-Token": "wrong", "X-Gitlab-Event": "Push Hook"}
			},
			"target: growth < 50 MiB"},
		{"bad signature", []string{"LOTSE_WEBHOOK_SIGNING_SECRET=whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="},
			func() map[string]string {
				return map[string]string{"X-Gitlab-Event": "Push Hook", "webhook-id": "m", "webhook-signature": "v1,AAAA",
					"webhook-timestamp": strconv.FormatInt(time.Now().Unix(), 10)}
			}, "bodies read within --unverified-body-budget (64 MiB)"},
	} {
		addr := freeAddr()
		cmd := exec.CommandContext(ctx, lotsed)
		cmd.Env = append(append(os.Environ(), "LOTSE_LISTEN="+addr, "LOTSE_DATABASE_URL="+filepath.Join(dir, fmt.Sprintf("lotsed%d.db", i)),
			"LOTSE_GITLAB_URL="+simURL, "LOTSE_GITLAB_TOKEN="+bot.Token, "LOTSE_GITOPS_PROJECT=platform/gitops", "LOTSE_LOG_LEVEL=error"), run.env...)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		stop := func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() } //nolint:errcheck // best effort
		if err := waitUp("http://" + addr + "/readyz"); err != nil {
			stop()
			return err
		}
		pid := cmd.Process.Pid
		time.Sleep(500 * time.Millisecond) // let the start-up settle
		before, hwmBefore := procKB(pid, "VmRSS:"), procKB(pid, "VmHWM:")
		var mu sync.Mutex
		sampled := before
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				kb := procKB(pid, "VmRSS:")
				mu.Lock()
				sampled = max(sampled, kb)
				mu.Unlock()
				select {
				case <-done:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
		})
		answers := floodLotsed(ctx, "http://"+addr+"/webhooks/gitlab", clients, size, run.hdr())
		time.Sleep(200 * time.Millisecond)
		close(done)
		wg.Wait()
		peak := sampled
		if hwm := procKB(pid, "VmHWM:"); hwm > hwmBefore {
			peak = max(peak, hwm)
		}
		after := procKB(pid, "VmRSS:")
		stop()
		fmt.Printf("%-24s %10.0f %10.0f %12.1f %10.0f   %s; %s\n", run.name, mib(before), mib(peak), mib(peak-before), mib(after), answers, run.note)
	}
	return nil
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

// procKB reads a kB field (VmRSS:, VmHWM:) of /proc/PID/status.
func procKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}

// filler is a body of n bytes that the sender does not hold in memory.
type filler struct{ n int64 }

var fillerChunk = bytes.Repeat([]byte("x"), 32<<10)

func (f *filler) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.EOF
	}
	n := min(int64(copy(p, fillerChunk)), f.n)
	f.n -= n
	return int(n), nil
}

// floodLotsed sends n requests with size-byte bodies at once and sums up
// the answers: status codes, and "closed unread" for the connections lotsed
// closed before the body was sent, having answered without reading it (the
// client then often sees the reset rather than the answer).
func floodLotsed(ctx context.Context, url string, n int, size int64, hdr map[string]string) string {
	var mu sync.Mutex
	codes := map[string]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			what := "closed unread"
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, &filler{n: size})
			if err == nil {
				req.ContentLength = size
				for k, v := range hdr {
					req.Header.Set(k, v)
				}
				c := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
				if resp, err := c.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body) //nolint:errcheck // drained
					resp.Body.Close()
					what = strconv.Itoa(resp.StatusCode)
				}
			}
			mu.Lock()
			codes[what]++
			mu.Unlock()
		})
	}
	wg.Wait()
	var parts []string
	for _, k := range []string{"401", "503", "413", "closed unread"} {
		if codes[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d x %s", codes[k], k))
		}
		delete(codes, k)
	}
	for k, v := range codes {
		parts = append(parts, fmt.Sprintf("%d x %s", v, k))
	}
	return strings.Join(parts, ", ")
}
