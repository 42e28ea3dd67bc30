package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
)

// appLockSpace is the first key of PostgreSQL advisory locks on apps
// ("app" in ASCII); the second is the hash of the app's name. Apps whose
// names hash alike share a lock, which only serializes them.
const appLockSpace = 0x617070

// AppLock is one app's lock across every process sharing the database:
// while it is held, no other replica works on the app. On PostgreSQL it is
// a session advisory lock on a connection kept for it, so it ends with the
// session if the process dies; SQLite serves one process, whose own lock
// serves (the zero AppLock).
type AppLock struct {
	conn *sql.Conn
	app  string
}

// LockApp waits for app's lock and takes it, or returns ctx's error.
func (db *DB) LockApp(ctx context.Context, app string) (*AppLock, error) {
	if db.dialect != postgres {
		return &AppLock{app: app}, nil
	}
	conn, err := db.w.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock app %s: %w", app, err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, appLockSpace, app); err != nil {
		discard(conn)
		return nil, fmt.Errorf("lock app %s: %w", app, err)
	}
	return &AppLock{conn: conn, app: app}, nil
}

// Held returns an error unless the lock is still held: the session that
// holds it may have ended (the connection broke, an administrator ended
// it), and with it the lock, which another replica may hold now.
func (l *AppLock) Held(ctx context.Context) error {
	if l.conn == nil {
		return nil
	}
	var held bool
	err := l.conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
		AND classid = $1 AND objid = hashtext($2)::oid AND objsubid = 2 AND granted)`, appLockSpace, l.app).Scan(&held)
	if err != nil {
		return fmt.Errorf("lock of app %s: %w", l.app, err)
	}
	if !held {
		return fmt.Errorf("lock of app %s: %w", l.app, errLockLost)
	}
	return nil
}

var errLockLost = errors.New("no longer held")

// Unlock releases the lock. When the release cannot be confirmed, the
// connection is dropped, which ends its session and the lock with it.
func (l *AppLock) Unlock() {
	if l.conn == nil {
		return
	}
	var released bool
	err := l.conn.QueryRowContext(context.Background(), `SELECT pg_advisory_unlock($1, hashtext($2))`, appLockSpace, l.app).Scan(&released)
	if err != nil || !released {
		discard(l.conn)
		return
	}
	l.conn.Close()
}

// discard closes conn and drops it from the pool.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
}
