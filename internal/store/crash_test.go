package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashChildEnv makes the test binary the crash test's child: it enqueues
// into the SQLite database the variable names until it is killed.
const crashChildEnv = "LOTSE_STORE_CRASH_CHILD"

// TestSQLiteCrashSafety starts a child process that enqueues in a loop from
// several goroutines and prints "ack <key> <id>" each time Enqueue returns,
// SIGKILLs it mid-stream, reopens the database and checks that every
// acknowledged delivery is there with its id.
func TestSQLiteCrashSafety(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := sqliteURL(t)
	for round := range 3 {
		acked := runCrashChild(t, path, round)
		if len(acked) == 0 {
			t.Fatalf("round %d: the child acknowledged nothing", round)
		}
		db, err := Open(ctxT(t), path)
		if err != nil {
			t.Fatalf("reopen after SIGKILL: %v", err)
		}
		stored := map[string]int64{}
		all, err := db.Deliveries(ctxT(t), Queued, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range all {
			stored[d.Key] = d.ID
		}
		for key, id := range acked {
			if got, ok := stored[key]; !ok || got != id {
				t.Errorf("round %d: acknowledged delivery %s (id %d) after SIGKILL: stored id %d, present %v", round, key, id, got, ok)
			}
		}
		t.Logf("round %d: %d acknowledged, %d stored", round, len(acked), len(all))
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// runCrashChild runs the child until it has acknowledged a few hundred
// deliveries, kills it and returns what it acknowledged.
func runCrashChild(t *testing.T, path string, round int) map[string]int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSQLiteCrashSafety$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path, "LOTSE_STORE_CRASH_ROUND="+strconv.Itoa(round))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int64{}
	sc := bufio.NewScanner(out)
	killAt := 300 + round*500
	deadline := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	killed := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "ack" {
			continue
		}
		id, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatalf("child printed %q", sc.Text())
		}
		acked[f[1]] = id
		if !killed && len(acked) >= killAt {
			// Keep reading after the kill: lines already written count.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("the child stopped before it was killed: %v", err)
	}
	return acked
}

// crashChild enqueues until killed; it never returns normally.
func crashChild(path string) {
	ctx := context.Background()
	db, err := Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	round := os.Getenv("LOTSE_STORE_CRASH_ROUND")
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	b := body(4096)
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("r%s-g%d-%d", round, g, i)
				id, _, err := db.Enqueue(ctx, Delivery{Source: "gitlab", Key: key, Body: b})
				if err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(w, "ack %s %d\n", key, id)
				w.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}
