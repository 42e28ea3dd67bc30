package store

import (
	"context"
	"testing"
	"time"
)

// TestLockAppAcrossProcesses: two stores on one PostgreSQL database stand
// for two replicas; one app's lock is held by one of them at a time, other
// apps are not held up, and a lock whose session ended says so.
func TestLockAppAcrossProcesses(t *testing.T) {
	url := postgresURL(t)
	ctx := context.Background()
	a, b := open(t, url), open(t, url)

	la, err := a.LockApp(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Held(ctx); err != nil {
		t.Fatalf("held: %v", err)
	}
	// The other replica waits for shop...
	got := make(chan error, 1)
	go func() {
		lb, err := b.LockApp(ctx, "shop")
		if err == nil {
			lb.Unlock()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("the second replica took shop's lock while the first held it (err %v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	// ...but not for another app.
	lo, err := b.LockApp(ctx, "cart")
	if err != nil {
		t.Fatal(err)
	}
	lo.Unlock()
	la.Unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second replica did not get shop's lock once it was released")
	}

	// Waiting ends with the context.
	la, err = a.LockApp(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := b.LockApp(short, "shop"); err == nil {
		t.Fatal("LockApp returned without the lock's holder letting go")
	}

	// A lock whose session ended is not held any more.
	var pid int
	if err := la.conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := b.w.ExecContext(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	if err := la.Held(ctx); err == nil {
		t.Fatal("Held says yes after the lock's session ended")
	}
	la.Unlock() // does not block or panic on a dead session
	lb, err := b.LockApp(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if err := lb.Held(ctx); err != nil {
		t.Fatalf("held: %v", err)
	}
	lb.Unlock()
}

// On SQLite, one process, the lock is the process's own: LockApp holds
// nothing and never waits.
func TestLockAppSQLite(t *testing.T) {
	db := open(t, sqliteURL(t))
	ctx := context.Background()
	l1, err := db.LockApp(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	l2, err := db.LockApp(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if err := l1.Held(ctx); err != nil {
		t.Fatal(err)
	}
	l1.Unlock()
	l2.Unlock()
}
