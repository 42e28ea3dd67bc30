package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/store"
)

// Run is lotsed's main: it parses the command line, starts the HTTP server
// and the workers, and stops them gracefully when ctx is done. It returns
// the exit code. newVerifier makes what checks signatures and attestations
// for the gates (cmd/lotsed gives cosign's); newAttester what signs
// promotion records with --signing-key (cmd/lotsed gives cosign's; nil:
// none can be signed).
func Run(ctx context.Context, version string, args []string, getenv func(string) string, stdout, stderr io.Writer, newVerifier NewVerifier, newAttester NewAttester) int {
	file, flags, help, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "lotsed: %v\nRun 'lotsed --help' for the options.\n", err)
		return 2
	}
	if help {
		Usage(stdout)
		return 0
	}
	if _, ok := flags["version"]; ok {
		fmt.Fprintf(stdout, "lotsed %s\n", version)
		return 0
	}
	cfg, err := LoadConfig(file, flags, getenv, os.ReadFile)
	if err != nil {
		fmt.Fprintf(stderr, "lotsed: %v\n", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		fmt.Fprintf(stderr, "lotsed: log-level: %v\n", err)
		return 2
	}
	if getenv("GOGC") == "" {
		// lotsed's live heap is small (tens of MB) and every delivery
		// allocates its body: collecting at 3x rather than 2x the live
		// heap costs a few MB and saves about a twentieth of the CPU at
		// full intake.
		debug.SetGCPercent(200)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	reg := Registry{Insecure: cfg.Insecure, Offline: cfg.SignOffline, Username: cfg.RegistryUser, Password: cfg.RegistryPassword}
	verifier := newVerifier(reg)
	attester, err := recordAttester(cfg, reg, getenv, newAttester, log)
	if err != nil {
		fmt.Fprintf(stderr, "lotsed: signing-key: %v\n", err)
		return 2
	}
	if attester != nil {
		defer attester.Close()
	}
	if err := serve(ctx, cfg, version, verifier, attester, log); err != nil {
		log.Error("lotsed stopped", "err", err)
		return 1
	}
	return 0
}

// parseArgs reads --config FILE, --help, --version and --OPTION=VALUE or
// --OPTION VALUE for the options of the table.
func parseArgs(args []string) (file string, flags map[string]string, help bool, err error) {
	flags = map[string]string{}
	known := map[string]bool{"config": true, "version": true}
	for _, o := range options() {
		known[o.key] = true
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-h" || a == "--help" || a == "-help" {
			return "", nil, true, nil
		}
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			return "", nil, false, fmt.Errorf("unexpected argument %q", a)
		}
		name, val, hasVal := strings.Cut(name, "=")
		if !known[name] {
			return "", nil, false, fmt.Errorf("unknown option --%s", name)
		}
		if name == "version" {
			flags["version"] = ""
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return "", nil, false, fmt.Errorf("--%s needs a value", name)
			}
			i++
			val = args[i]
		}
		if name == "config" {
			file = val
			continue
		}
		flags[name] = val
	}
	return file, flags, false, nil
}

// serve runs the service until ctx is done.
func serve(ctx context.Context, cfg *Config, version string, verifier Verifier, attester Attester, log *slog.Logger) error {
	l, err := assemble(ctx, cfg, version, verifier, attester, log)
	if err != nil {
		return err
	}
	defer l.close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := newHTTPServer(cfg, l.server.Handler())
	log.Info("lotsed started", append([]any{"version", version, "addr", ln.Addr().String()}, cfg.Redacted()...)...)
	errs := make(chan error, 1)
	go func() { errs <- hs.Serve(ln) }()
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { l.workers.run(workCtx) })
	wg.Go(func() { l.timer.run(workCtx) })
	l.server.SetReady(true)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errs:
	}
	l.server.SetReady(false)
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil {
		log.Warn("shutdown", "err", err)
	}
	stopWork()
	wg.Wait()
	log.Info("lotsed stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// newHTTPServer is lotsed's http.Server: every phase of a request and an
// idle connection is bounded in time, so that slow or silent clients do not
// hold connections (and their buffers) open.
func newHTTPServer(cfg *Config, h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout,
		IdleTimeout: cfg.IdleTimeout, MaxHeaderBytes: 64 << 10}
}

// lotsed is the assembled service: one owner per concern, data flowing one
// way: server (intake) → hand-off → workers → dispatcher → runner → effects.
type lotsed struct {
	db      *store.DB
	server  *Server
	workers *workers
	timer   *timer
	keyDir  string
	log     *slog.Logger
}

// assemble opens the store and GitLab and wires the parts.
func assemble(ctx context.Context, cfg *Config, version string, verifier Verifier, attester Attester, log *slog.Logger) (*lotsed, error) {
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	l := &lotsed{db: db, log: log}
	m := newMetrics()
	m.setBuild(version)
	verifier = countingVerifier{next: verifier, m: m}
	gl, err := gitlab.New(cfg.GitLabURL, cfg.GitLabToken, gitlab.WithUserAgent("lotsed/"+version), gitlab.WithObserver(m.gitlabRequest))
	if err != nil {
		l.close()
		return nil, err
	}
	if l.keyDir, err = os.MkdirTemp("", "lotsed"); err != nil {
		l.close()
		return nil, err
	}
	now := time.Now
	if db.SingleProcess() {
		// Leases left in a database no other process uses are those of a
		// lotsed that died: their deliveries need not wait for them to
		// expire.
		n, err := db.ReleaseLeases(ctx, now())
		if err != nil {
			l.close()
			return nil, err
		}
		if n > 0 {
			log.Info("deliveries of an earlier run queued again", "count", n)
		}
	}
	u, err := gl.CurrentUser(ctx)
	if cfg.BotUser != "" {
		u, err = gl.UserByUsername(ctx, cfg.BotUser)
	}
	if err != nil {
		l.close()
		return nil, fmt.Errorf("who is lotse's GitLab user (LOTSE_GITLAB_TOKEN, LOTSE_BOT_USER)? %w", err)
	}
	bot := promotion.User{ID: u.ID, Username: u.Username}
	reader := &snapshotReader{gl: gl, users: gl, gitopsProject: cfg.GitOpsProject, bot: bot, operators: cfg.Operators, writers: cfg.Writers,
		publicKey: cfg.PublicKey, keyDir: l.keyDir}
	config := &configSource{gitopsProject: cfg.GitOpsProject, read: reader.read}
	host, _ := os.Hostname()
	owner := fmt.Sprintf("%s-%d-%d", host, os.Getpid(), rand.Int64())
	h := newHandoff(owner+"/intake", leaseTTL, cfg.Workers*leaseBatch)
	authors := &authorsReader{gl: gl}
	eff := &effects{project: cfg.GitOpsProject, bot: bot, publicURL: cfg.PublicURL, mrs: gl, contents: gl, authors: authors, notes: gl,
		statuses: gl, sources: gl, claims: db, audit: db, gates: &gates{verifier: verifier}, metrics: m, log: log,
		records: &records{attester: attester, signedWith: cfg.SigningKey, now: now},
		deploys: gl, deployLog: db}
	run := &runner{states: db, shared: db, effects: eff, now: now, log: log}
	disp := &dispatcher{config: config, runner: run, commits: gl, files: gl, authors: authors, gitopsProject: cfg.GitOpsProject,
		bot: bot, now: now, log: log}
	l.workers = &workers{queue: db, handoff: h, proc: disp, owner: owner, n: cfg.Workers, ttl: leaseTTL, maxAttempts: cfg.MaxAttempts, metrics: m, now: now, log: log}
	l.timer = &timer{every: cfg.Tick, retention: cfg.Retention, store: db, tick: disp.tick, metrics: m, now: now, log: log}
	rel, err := newReleases(cfg, gl, reader, eff.gates, db, log)
	if err != nil {
		l.close()
		return nil, err
	}
	l.server, err = newServer(cfg, serverParts{queue: db, handoff: h, watch: config, views: &views{config: config, store: db, now: now,
		gitlabURL: cfg.GitLabURL, project: cfg.GitOpsProject, fixWindow: cfg.DORAFixWindow},
		metrics: m, log: log, now: now, releases: rel})
	if err != nil {
		l.close()
		return nil, err
	}
	m.watchPromotions(config, db, now)
	l.server.doctor = newDoctorCheck(cfg, gl, now)
	l.server.freezer = disp
	if _, err := config.current(ctx); err != nil {
		// lotsed still starts: the config is read again on the next delivery.
		log.Warn("lotse.yaml not readable yet", "project", cfg.GitOpsProject, "err", err)
	}
	return l, nil
}

// close releases what this process leased and did not finish (handed over
// but not taken, or interrupted), so the other replicas may take it at once,
// and closes the store.
func (l *lotsed) close() {
	if l.workers != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := l.db.ReleaseLeases(ctx, time.Now(), l.workers.owners()...); err != nil {
			l.log.Warn("release leases", "err", err)
		}
		cancel()
	}
	l.db.Close()
	if l.keyDir != "" {
		os.RemoveAll(l.keyDir)
	}
}
