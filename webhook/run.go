package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"
)

// Run is lotsed's main: it parses the command line, starts the HTTP server
// and the workers, and stops them gracefully when ctx is done. It returns
// the exit code.
func Run(ctx context.Context, version string, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
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
	if err := serve(ctx, cfg, version, log); err != nil {
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
func serve(ctx context.Context, cfg *Config, version string, log *slog.Logger) error {
	svc, err := newService(ctx, cfg, version, log)
	if err != nil {
		return err
	}
	defer svc.close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{Handler: svc.server.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second}
	log.Info("lotsed started", append([]any{"version", version, "addr", ln.Addr().String()}, cfg.Redacted()...)...)
	errs := make(chan error, 2)
	go func() { errs <- hs.Serve(ln) }()
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { svc.work(workCtx); close(done) }()
	svc.server.SetReady(true)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errs:
	}
	svc.server.SetReady(false)
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil {
		log.Warn("shutdown", "err", err)
	}
	stopWork()
	<-done
	log.Info("lotsed stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}
