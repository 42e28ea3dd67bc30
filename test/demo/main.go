// Command demo runs lotse's main job on embedded defaults, offline: a
// loopback registry, a sample image built on the fly, a fixture
// vulnerability DB and a throwaway key. `make demo` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lotse/lotse/internal/sign"
	"github.com/lotse/lotse/test/fixture"
)

func main() {
	lotse := flag.String("lotse", "bin/lotse", "the lotse binary")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *lotse, *keep, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	ctx   context.Context
	lotse string
	dir   string
	env   []string
	out   io.Writer
}

func run(ctx context.Context, lotse string, keep bool, out io.Writer) error {
	lotse, err := filepath.Abs(lotse)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "lotse-demo")
	if err != nil {
		return err
	}
	if keep {
		defer fmt.Fprintf(out, "\nwork directory kept: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	start := time.Now()

	// 1. A registry on loopback: stands in for GitLab's registry and Harbor.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // closed below
	defer srv.Close()
	reg := ln.Addr().String()
	step(out, "registry", "listening on %s (stands in for GitLab's registry and Harbor)", reg)

	// 2. A sample image: Debian packages and a Go binary with module info.
	img, err := fixture.GoImage(ctx, mkdir(dir, "build"))
	if err != nil {
		return err
	}
	built, _ := name.NewTag(reg + "/team/shop:build-42")
	if err := remote.Write(built, img, remote.WithContext(ctx)); err != nil {
		return err
	}
	d, _ := img.Digest()
	step(out, "build", "pushed %s (%s)", built, d)

	// 3. A vulnerability DB from fixtures and a throwaway signing key.
	cache := mkdir(dir, "cache")
	if err := fixture.WriteVulnDB(cache, time.Now()); err != nil {
		return err
	}
	priv, pub, err := sign.GenerateKeyPair([]byte("demo"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cosign.key"), priv, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cosign.pub"), pub, 0o644); err != nil {
		return err
	}
	step(out, "setup", "fixture vulnerability DB in %s, throwaway cosign key pair", cache)

	dm := &demo{ctx: ctx, lotse: lotse, dir: dir, out: out,
		env: append(os.Environ(), "LOTSE_CACHE_DIR="+cache, "COSIGN_PASSWORD=demo", "HOME="+dir)}
	harbor := reg + "/harbor/team/shop"
	release := []string{"release", built.String(), "--to", harbor, "--tag", "1.4.0", "--offline", "--key", "cosign.key", "--fail-on", "critical", "--dotenv", "release.env"}

	// 4. The release gate stops a critical finding: nothing reaches Harbor.
	fmt.Fprintf(out, "\n$ lotse %s\n", strings.Join(release, " "))
	code, err := dm.lotseRun(release...)
	if err != nil {
		return err
	}
	if code != 3 {
		return fmt.Errorf("expected the gate to fail with exit code 3, got %d", code)
	}
	step(out, "gate", "exit code 3: a CRITICAL finding stopped the release before anything was pushed")

	// 5. The team accepts it with a reason in .trivyignore; the release goes through.
	if err := os.WriteFile(filepath.Join(dir, ".trivyignore"), []byte("# zlib inflate bug: shop never inflates untrusted input (SEC-1234, until 2026-12-31)\nCVE-2023-45853\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n$ echo CVE-2023-45853 >> .trivyignore   # accepted, with a reason\n$ lotse %s\n", strings.Join(release, " "))
	if code, err := dm.lotseRun(release...); err != nil || code != 0 {
		return fmt.Errorf("release: exit code %d: %v", code, err)
	}

	// 6. Anyone can check what was released.
	verify := []string{"verify", "--offline", "--key", "cosign.pub", "--type", "cyclonedx", "--type", "vuln", harbor + ":1.4.0"}
	fmt.Fprintf(out, "\n$ lotse %s\n", strings.Join(verify, " "))
	if code, err := dm.lotseRun(verify...); err != nil || code != 0 {
		return fmt.Errorf("verify: exit code %d: %v", code, err)
	}

	env, err := os.ReadFile(filepath.Join(dir, "release.env"))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nWhat happened, in %s:\n", time.Since(start).Round(100*time.Millisecond))
	fmt.Fprintf(out, "  - one read of %s: SBOM (syft) and vulnerability scan (trivy) side by side\n", built)
	fmt.Fprintf(out, "  - the gate stopped a CRITICAL finding; accepted with a reason, the release went through\n")
	fmt.Fprintf(out, "  - published by digest to %s, tagged 1.4.0, signed, SBOM and scan attested (cosign)\n", harbor)
	fmt.Fprintf(out, "  - reports for GitLab: gl-sbom-image.cdx.json, gl-container-scanning-report.json, release.env:\n")
	for _, l := range strings.Split(strings.TrimSpace(string(env)), "\n") {
		fmt.Fprintf(out, "      %s\n", l)
	}
	return nil
}

func (d *demo) lotseRun(args ...string) (int, error) {
	cmd := exec.CommandContext(d.ctx, d.lotse, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = d.dir, d.env, d.out, d.out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

func step(w io.Writer, what, format string, args ...any) {
	fmt.Fprintf(w, "==> %-8s %s\n", what, fmt.Sprintf(format, args...))
}

func mkdir(parent, name string) string {
	p := filepath.Join(parent, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		panic(err)
	}
	return p
}
