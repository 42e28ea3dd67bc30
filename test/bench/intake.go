package main

import (
	"bytes"
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/lib/pq" // PostgreSQL driver, for a fresh schema per run
)

// mrHook is GitLab's documented Merge Request Hook example (about 6 KB),
// moved to the GitOps project so lotsed stores it.
//
//go:embed mr-hook.json
var mrHook []byte

// intake measures lotsed's webhook intake on loopback: acknowledged
// deliveries per second with many senders, and the acknowledgement latency
// at a fixed 500 deliveries/s, measured from each request's scheduled send
// time (so a stall counts against every request it delays). For SQLite and,
// when pgURL is set, PostgreSQL.
func intake(ctx context.Context, lotsed, pgURL string, seconds int) error {
	dir, err := os.MkdirTemp("", "lotse-bench-intake")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	simURL, bot, stopSim, err := startShopGitOps(filepath.Join(dir, "sim"))
	if err != nil {
		return err
	}
	defer stopSim()
	body := bytes.ReplaceAll(mrHook, []byte(`"path_with_namespace":"gitlabhq/gitlab-test"`), []byte(`"path_with_namespace":"platform/gitops"`))

	fmt.Printf("\nlotsed webhook intake, loopback, %d KB Merge Request Hook bodies, fsync on, %d concurrent senders for acked/s:\n", len(body)/1024, senders)
	fmt.Printf("%-10s %12s %10s %10s %10s %10s\n", "database", "acked/s", "p50 ms", "p99 ms", "max ms", "peak MiB")
	dbs := []struct{ name, url string }{{"sqlite", filepath.Join(dir, "lotsed.db")}}
	if pgURL != "" {
		u, drop, err := freshSchema(ctx, pgURL)
		if err != nil {
			return err
		}
		defer drop()
		dbs = append(dbs, struct{ name, url string }{"postgres", u})
	}
	for _, db := range dbs {
		addr := freeAddr()
		cmd := exec.CommandContext(ctx, lotsed)
		cmd.Env = append(os.Environ(), "LOTSE_LISTEN="+addr, "LOTSE_DATABASE_URL="+db.url, "LOTSE_WEBHOOK_SECRET=bench",
			"LOTSE_GITLAB_URL="+simURL, "LOTSE_GITLAB_TOKEN="+bot.Token, "LOTSE_GITOPS_PROJECT=platform/gitops", "LOTSE_LOG_LEVEL=error")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		stop := func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() } //nolint:errcheck // best effort
		if err := waitUp("http://" + addr + "/readyz"); err != nil {
			stop()
			return err
		}
		url := "http://" + addr + "/webhooks/gitlab"
		thr, err := saturate(ctx, url, body, db.name, time.Duration(seconds)*time.Second)
		if err != nil {
			stop()
			return err
		}
		lat, err := fixedRate(ctx, url, body, db.name, 500, time.Duration(seconds)*time.Second)
		peak := peakRSS(cmd.Process.Pid)
		stop()
		if err != nil {
			return err
		}
		fmt.Printf("%-10s %12.0f %10.2f %10.2f %10.2f %10.0f\n", db.name, thr, ms(lat, 0.5), ms(lat, 0.99), ms(lat, 1), peak)
	}
	fmt.Printf("targets: >= 10,000/s on SQLite, >= 5,000/s on PostgreSQL, p99 <= 5 ms at 500/s\n")
	return nil
}

var keySeq atomic.Int64

func send(c *http.Client, url string, body []byte, run string) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Gitlab-Event", "Merge Request Hook")
	req.Header.Set("X-Gitlab-Token", "bench")
	req.Header.Set("Idempotency-Key", run+"-"+strconv.FormatInt(keySeq.Add(1), 10))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck // drained for keep-alive
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("lotsed answered %d", resp.StatusCode)
	}
	return nil
}

func client(conns int) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
}

// senders is how many requests saturate keeps in flight.
const senders = 64

// saturate sends with senders concurrent senders for d and returns acks/s.
func saturate(ctx context.Context, url string, body []byte, run string, d time.Duration) (float64, error) {
	c := client(senders)
	var n atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := send(c, url, body, run+"-sat"); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// fixedRate sends rate requests per second on a fixed schedule for d and
// returns the latencies from each request's scheduled time to its answer.
func fixedRate(ctx context.Context, url string, body []byte, run string, rate int, d time.Duration) ([]time.Duration, error) {
	c := client(256)
	total := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, total)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now().Add(50 * time.Millisecond)
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(at))
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := send(c, url, body, run+"-rate"); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
			lat[i] = time.Since(at)
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, nil
}

func ms(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}

// peakRSS reads VmHWM of a running process in MiB.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:18080"
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitUp(url string) error {
	for range 200 {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("lotsed did not become ready at %s", url)
}

// freshSchema creates an empty schema in the PostgreSQL at base, so that
// every run starts from an empty database as the SQLite one does, and
// returns a URL that uses it and a func that drops it.
func freshSchema(ctx context.Context, base string) (string, func(), error) {
	admin, err := sql.Open("postgres", base)
	if err != nil {
		return "", nil, err
	}
	schema := fmt.Sprintf("bench_%d", time.Now().UnixNano())
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return "", nil, fmt.Errorf("create schema: %w", err)
	}
	drop := func() {
		admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE") //nolint:errcheck // best effort
		admin.Close()
	}
	u, err := url.Parse(base)
	if err != nil {
		drop()
		return "", nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), drop, nil
}
