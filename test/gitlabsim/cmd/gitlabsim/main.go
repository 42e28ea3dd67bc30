// Command gitlabsim runs the GitLab simulator as a standalone HTTP server.
//
//	go run ./test/gitlabsim/cmd/gitlabsim -addr 127.0.0.1:0 -dir DIR
//
// It prints the base URL and the admin token on stdout, one per line
// ("url=..." and "admin_token=..."), then serves until interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lotse/lotse/test/gitlabsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gitlabsim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gitlabsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	dir := fs.String("dir", "", "directory for the git repositories (default: a new temporary directory)")
	adminToken := fs.String("admin-token", getenv("GITLABSIM_ADMIN_TOKEN"), "admin API token (default $GITLABSIM_ADMIN_TOKEN, else random)")
	baseURL := fs.String("base-url", "", "external URL used in links and webhooks (default http://<listen address>)")
	verbose := fs.Bool("v", false, "debug logging on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "gitlabsim-")
		if err != nil {
			return fmt.Errorf("temp dir: %w", err)
		}
		*dir = d
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	url := *baseURL
	if url == "" {
		url = "http://" + ln.Addr().String()
	}
	sim := gitlabsim.New(gitlabsim.Options{Dir: *dir, AdminToken: *adminToken, BaseURL: url, Logger: log})
	defer sim.Close()
	fmt.Fprintf(stdout, "url=%s\nadmin_token=%s\ndir=%s\n", url, sim.AdminToken(), *dir)

	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
