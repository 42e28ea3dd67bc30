// Command bench times `lotse release` against the chain of reference CLIs it
// replaces (syft, trivy, crane, cosign sign, cosign attest twice) on the same
// images, registry and DB, and checks that both find the same
// vulnerabilities; then it runs concurrent `lotse bump` processes against
// the GitLab simulator (-bumps-only runs just that), and with -lotsed it
// measures lotsed's intake (-intake-only) and what unauthenticated 25 MiB
// bodies cost it (-abuse-only). `make bench` builds the
// CLIs and runs it. With -pgo FILE it only profiles `lotse release` on the
// same images and writes the merged profile (`make pgo`).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lotse/lotse/internal/sign"
	"github.com/lotse/lotse/test/fixture"
)

func main() {
	lotse := flag.String("lotse", "bin/lotse", "the lotse binary")
	tools := flag.String("tools", "", "directory with syft, trivy, cosign and crane")
	runs := flag.Int("runs", 5, "runs per image and side; medians are printed")
	largeMB := flag.Int("large-mb", 128, "size of the large image's layers in MiB")
	serveDir := flag.String("serve", "", "internal: set up DIR, serve the registry, print READY ADDR, run until stdin closes")
	releaseOnly := flag.Bool("release-only", false, "run only the release section (lotse release against the chain)")
	bumpsOnly := flag.Bool("bumps-only", false, "run only the concurrent-bumps section (needs no -tools)")
	nBumps := flag.Int("bumps", 50, "concurrent lotse bump processes (apps in one values file)")
	rate429 := flag.Float64("bumps-429", 0.1, "share of GitLab requests answered 429 during the bumps")
	lotsed := flag.String("lotsed", "", "the lotsed binary: measure its webhook intake")
	intakeOnly := flag.Bool("intake-only", false, "run only the lotsed intake section")
	abuseOnly := flag.Bool("abuse-only", false, "run only the lotsed abuse section (unauthenticated 25 MiB bodies)")
	seconds := flag.Int("seconds", 5, "length of each intake run")
	pgoOut := flag.String("pgo", "", "write the CPU profile of lotse release on the bench images to FILE (cmd/lotse/default.pgo) and stop")
	flag.Parse()
	pgURL := os.Getenv("LOTSE_TEST_POSTGRES_URL")
	var err error
	switch {
	case *serveDir != "":
		err = serve(context.Background(), *serveDir, *largeMB)
	case *pgoOut != "":
		err = pgo(context.Background(), *lotse, *pgoOut, *runs, *largeMB)
	case *releaseOnly:
		err = run(context.Background(), *lotse, *tools, *runs, *largeMB)
	case *bumpsOnly:
		err = bumps(context.Background(), *lotse, *nBumps, *rate429)
	case *intakeOnly:
		err = intake(context.Background(), *lotsed, pgURL, *seconds)
	case *abuseOnly:
		err = abuse(context.Background(), *lotsed)
	default:
		err = run(context.Background(), *lotse, *tools, *runs, *largeMB)
		if err == nil {
			err = bumps(context.Background(), *lotse, *nBumps, *rate429)
		}
		if err == nil && *lotsed != "" {
			err = intake(context.Background(), *lotsed, pgURL, *seconds)
		}
		if err == nil && *lotsed != "" {
			err = abuse(context.Background(), *lotsed)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// serve is the fixture half, in its own process: it holds the images in
// memory, and a process forked from a large one reports the parent's peak RSS
// as its own (Linux folds the pre-exec address space into ru_maxrss), so the
// tools are started from the small measuring process instead.
func serve(ctx context.Context, dir string, largeMB int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // closed below
	defer srv.Close()
	reg := ln.Addr().String()
	if err := fixture.WriteVulnDB(filepath.Join(dir, "cache"), time.Now()); err != nil {
		return err
	}
	if err := fixture.WriteJavaDB(filepath.Join(dir, "cache"), time.Now()); err != nil {
		return err
	}
	priv, pub, err := sign.GenerateKeyPair([]byte("bench"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cosign.key"), priv, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cosign.pub"), pub, 0o644); err != nil {
		return err
	}
	if err := pushShapes(ctx, reg, dir, largeMB); err != nil {
		return err
	}
	fmt.Printf("READY %s\n", reg)
	io.Copy(io.Discard, os.Stdin) //nolint:errcheck // returns when the parent goes away
	return nil
}

// usage is what one process cost. anonKB is its largest anonymous
// resident set (heap and stacks, RssAnon) sampled every few milliseconds:
// peak RSS also counts the pages of the program's own file that it
// touched, which for one binary holding syft, trivy and cosign is most of
// what sets it apart from each of the chain's programs.
type usage struct {
	wall, cpu     time.Duration
	rssKB, anonKB int64
}

func (u *usage) add(o usage) {
	u.wall += o.wall
	u.cpu += o.cpu
	u.rssKB = max(u.rssKB, o.rssKB)
	u.anonKB = max(u.anonKB, o.anonKB)
}

type bench struct {
	ctx   context.Context
	dir   string
	env   []string
	tools string
}

func (b *bench) exec(name string, args ...string) (usage, error) {
	cmd := exec.CommandContext(b.ctx, name, args...)
	cmd.Dir, cmd.Env = b.dir, b.env
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return usage{}, err
	}
	anon := sampleAnon(cmd.Process.Pid)
	err := cmd.Wait()
	u := usage{wall: time.Since(start), anonKB: anon()}
	if cmd.ProcessState != nil {
		u.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			u.rssKB = ru.Maxrss
		}
	}
	if err != nil {
		return u, fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return u, nil
}

// sampleAnon reads RssAnon of pid every 2 ms until the returned function is
// called, which returns the largest value seen (KiB).
func sampleAnon(pid int) func() int64 {
	stop, done := make(chan struct{}), make(chan int64)
	path := fmt.Sprintf("/proc/%d/status", pid)
	go func() {
		var peak int64
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			if b, err := os.ReadFile(path); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
						var kb int64
						fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb) //nolint:errcheck // 0 when unreadable
						peak = max(peak, kb)
					}
				}
			}
			select {
			case <-stop:
				done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { close(stop); return <-done }
}

// startFixtures starts the fixture server (see serve) in its own process and
// returns a bench whose commands run in its scratch directory, the address of
// its registry, and the function that stops it and removes the directory.
func startFixtures(ctx context.Context, tools string, largeMB int) (*bench, string, func(), error) {
	dir, err := os.MkdirTemp("", "lotse-bench")
	if err != nil {
		return nil, "", nil, err
	}
	fail := func(err error) (*bench, string, func(), error) {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	fmt.Printf("building images (large: %d MiB of layers)...\n", largeMB)
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	server := exec.CommandContext(ctx, self, "-serve", dir, "-large-mb", fmt.Sprint(largeMB))
	server.Stderr = os.Stderr
	stdin, err := server.StdinPipe()
	if err != nil {
		return fail(err)
	}
	stdout, err := server.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := server.Start(); err != nil {
		return fail(err)
	}
	stop := func() {
		stdin.Close()
		server.Wait() //nolint:errcheck // best effort
		os.RemoveAll(dir)
	}
	var reg string
	if _, err := fmt.Fscanf(stdout, "READY %s\n", &reg); err != nil {
		stop()
		return nil, "", nil, fmt.Errorf("fixture server: %w", err)
	}
	cache := filepath.Join(dir, "cache")
	b := &bench{ctx: ctx, dir: dir, tools: tools, env: append(os.Environ(),
		"COSIGN_PASSWORD=bench", "COSIGN_YES=true", "HOME="+dir, "LOTSE_CACHE_DIR="+cache,
		"SYFT_REGISTRY_INSECURE_USE_HTTP=true", "SYFT_CHECK_FOR_APP_UPDATE=false", "TRIVY_DISABLE_TELEMETRY=true")}
	return b, reg, stop, nil
}

// chain runs the four CLIs the way a pipeline chains them today. trivy
// keeps what it learnt of each layer in CACHE/fanal beside the DB; the
// caller decides whether that cache is kept (warm) or not (cold).
func (b *bench) chain(src, dst, cache string) (outcome, error) {
	var total usage
	t := func(n string) string { return filepath.Join(b.tools, n) }
	steps := [][]string{
		{t("syft"), "scan", "registry:" + src, "-o", "cyclonedx-json=sbom.cdx.json", "-q"},
		{t("trivy"), "image", "--quiet", "--cache-dir", cache, "--skip-db-update", "--skip-java-db-update", "--skip-check-update",
			"--skip-version-check", "--offline-scan", "--disable-telemetry", "--scanners", "vuln", "--image-src", "remote",
			"--insecure", "--format", "json", "--output", "trivy.json", src},
		{t("crane"), "copy", "--insecure", src, dst + ":1"},
	}
	for _, s := range steps {
		u, err := b.exec(s[0], s[1:]...)
		if err != nil {
			return outcome{}, err
		}
		total.add(u)
	}
	ref, err := name.NewTag(dst + ":1")
	if err != nil {
		return outcome{}, err
	}
	desc, err := remote.Head(ref)
	if err != nil {
		return outcome{}, err
	}
	digest := ref.Context().Digest(desc.Digest.String()).String()
	cosign := []string{"--key", "cosign.key", "--tlog-upload=false", "--use-signing-config=false", "--allow-insecure-registry"}
	for _, s := range [][]string{
		append(append([]string{"sign"}, cosign...), digest),
		append(append([]string{"attest", "--type", "cyclonedx", "--predicate", "sbom.cdx.json"}, cosign...), digest),
		append(append([]string{"attest", "--type", "vuln", "--predicate", "trivy.json"}, cosign...), digest),
	} {
		u, err := b.exec(t("cosign"), s...)
		if err != nil {
			return outcome{}, err
		}
		total.add(u)
	}
	return b.outcome(total, "trivy.json", "sbom.cdx.json")
}

// lotse releases src to dst; lotse keeps each layer's analyses in
// CACHE/layers, which the caller keeps (warm) or removes (cold).
func (b *bench) lotse(lotse, src, dst string) (outcome, error) {
	u, err := b.exec(lotse, "release", src, "--to", dst, "--tag", "1", "--offline", "--key", "cosign.key",
		"--scan-file", "lotse-trivy.json", "--sbom-file", "lotse-sbom.cdx.json", "--gitlab-report", "lotse-gl.json")
	if err != nil {
		return outcome{}, err
	}
	return b.outcome(u, "lotse-trivy.json", "lotse-sbom.cdx.json")
}

// sbomScan scans the SBOM the last lotse release wrote, as lotse scan
// --sbom: the findings a release could derive from its SBOM instead of
// analysing the image a second time.
func (b *bench) sbomScan(lotse string) (outcome, error) {
	u, err := b.exec(lotse, "scan", "--sbom", "lotse-sbom.cdx.json", "--offline", "--format", "json", "-o", "lotse-sbom-trivy.json")
	if err != nil {
		return outcome{}, err
	}
	return b.outcome(u, "lotse-sbom-trivy.json", "lotse-sbom.cdx.json")
}

// outcome is what one side did: its cost, its findings (and, from a scan
// of the image, their fingerprints) and its SBOM's components.
type outcome struct {
	usage
	findings, fingerprints, components, deps []string
}

func (b *bench) outcome(u usage, trivyJSON, cdxJSON string) (outcome, error) {
	f, fp, err := findings(filepath.Join(b.dir, trivyJSON))
	if err != nil {
		return outcome{}, err
	}
	c, d, err := components(filepath.Join(b.dir, cdxJSON))
	return outcome{usage: u, findings: f, fingerprints: fp, components: c, deps: d}, err
}

// components reads a CycloneDX SBOM's components as sorted "type purl
// content" keys (a file: "file name content"), where content is a digest
// of what the component says besides its name: hashes, licenses, CPE,
// properties (but lotse's own, lotse:installedBy), publisher, author,
// description and external references; and its dependencies as sorted
// "purl -> purl" keys.
func components(path string) (comps, deps []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var bom struct {
		Components []struct {
			Type, Name, Version, Purl string
			BOMRef                    string `json:"bom-ref"`
			Hashes, Licenses          json.RawMessage
			CPE                       string
			Properties                []struct{ Name, Value string }
			Publisher, Author         string
			Description               string
			ExternalReferences        json.RawMessage
		}
		Dependencies []struct {
			Ref       string
			DependsOn []string
		}
	}
	if err := json.Unmarshal(data, &bom); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	id := map[string]string{}
	for _, c := range bom.Components {
		k := c.Purl
		if k == "" {
			k = c.Name + "@" + c.Version
		}
		id[c.BOMRef] = k
		c.Properties = slices.DeleteFunc(c.Properties, func(p struct{ Name, Value string }) bool { return p.Name == "lotse:installedBy" })
		content, err := json.Marshal([]any{c.Hashes, c.Licenses, c.CPE, c.Properties, c.Publisher, c.Author, c.Description, c.ExternalReferences})
		if err != nil {
			return nil, nil, err
		}
		sum := sha256.Sum256(content)
		comps = append(comps, c.Type+" "+k+" "+hex.EncodeToString(sum[:8]))
	}
	for _, d := range bom.Dependencies {
		for _, on := range d.DependsOn {
			deps = append(deps, id[d.Ref]+" -> "+id[on])
		}
	}
	sort.Strings(comps)
	sort.Strings(deps)
	return comps, deps, nil
}

// findings reads a trivy JSON report as sorted "ID package@version
// severity path" keys, and, for a report of a container image, the
// findings' sorted fingerprints (trivy makes them from the image's ID in
// its repository).
func findings(path string) (keys, fingerprints []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var rep struct {
		ArtifactType string
		Results      []struct {
			Vulnerabilities []struct{ VulnerabilityID, PkgName, PkgPath, InstalledVersion, Severity, Fingerprint string }
		}
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, r := range rep.Results {
		for _, v := range r.Vulnerabilities {
			keys = append(keys, v.VulnerabilityID+" "+v.PkgName+"@"+v.InstalledVersion+" "+v.Severity+" "+v.PkgPath)
			if rep.ArtifactType == "container_image" {
				fingerprints = append(fingerprints, v.Fingerprint)
			}
		}
	}
	sort.Strings(keys)
	sort.Strings(fingerprints)
	return keys, fingerprints, nil
}

func median(os []outcome) usage {
	us := make([]usage, len(os))
	for i, o := range os {
		us[i] = o.usage
	}
	pick := func(f func(usage) float64) float64 {
		v := make([]float64, len(us))
		for i, u := range us {
			v[i] = f(u)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	return usage{
		wall:   time.Duration(pick(func(u usage) float64 { return float64(u.wall) })),
		cpu:    time.Duration(pick(func(u usage) float64 { return float64(u.cpu) })),
		rssKB:  int64(pick(func(u usage) float64 { return float64(u.rssKB) })),
		anonKB: int64(pick(func(u usage) float64 { return float64(u.anonKB) })),
	}
}

func layersMiB(ref name.Reference) (float64, error) {
	img, err := remote.Image(ref)
	if err != nil {
		return 0, err
	}
	ls, err := img.Layers()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range ls {
		s, err := l.Size()
		if err != nil {
			return 0, err
		}
		n += s
	}
	return float64(n) / (1 << 20), nil
}

func mkdir(parent, n string) string {
	p := filepath.Join(parent, n)
	if err := os.MkdirAll(p, 0o755); err != nil {
		panic(err)
	}
	return p
}
