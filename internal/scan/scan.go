// Package scan finds vulnerabilities with the trivy library: in a container
// image (trivy's own analyzers over the image lotse already read) or in an
// SBOM, against a trivy DB that is downloaded from an OCI repository (a
// Harbor mirror for air-gapped sites) or used offline as it is.
//
// trivy-db keeps one process-wide DB handle, so one Scanner is open at a
// time in a process; Open waits for the previous one to be closed.
package scan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	trivydb "github.com/aquasecurity/trivy-db/pkg/db"
	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	"github.com/aquasecurity/trivy/pkg/cache"
	"github.com/aquasecurity/trivy/pkg/db"
	"github.com/aquasecurity/trivy/pkg/fanal/applier"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/javadb"
	tlog "github.com/aquasecurity/trivy/pkg/log"
	"github.com/aquasecurity/trivy/pkg/result"
	trivyscan "github.com/aquasecurity/trivy/pkg/scan"
	"github.com/aquasecurity/trivy/pkg/scan/langpkg"
	"github.com/aquasecurity/trivy/pkg/scan/local"
	"github.com/aquasecurity/trivy/pkg/scan/ospkg"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/aquasecurity/trivy/pkg/version/app"
	"github.com/aquasecurity/trivy/pkg/vulnerability"
	xos "github.com/aquasecurity/trivy/pkg/x/os"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/lotse/lotse/internal/vuln"
)

// DefaultDBRepositories are where trivy itself downloads its DB from.
var DefaultDBRepositories = []string{db.DefaultGCRRepository, db.DefaultGHCRRepository}

// DefaultJavaDBRepositories are where trivy itself downloads its Java DB
// from (mirror.gcr.io/aquasec/trivy-java-db:1, ghcr.io/aquasecurity/trivy-java-db:1).
var DefaultJavaDBRepositories = []string{javadb.DefaultGCRRepository, javadb.DefaultGHCRRepository}

// DB says where the vulnerability DB lives and where it may come from.
type DB struct {
	// CacheDir holds the DB in CacheDir/db, as trivy's --cache-dir does.
	CacheDir string
	// Repositories are OCI references of the DB, tried in order
	// (default DefaultDBRepositories).
	Repositories []string
	// JavaRepositories are OCI references of trivy's Java DB, which names
	// the Maven artifact of a jar by its SHA-1 (default
	// DefaultJavaDBRepositories). It is kept in CacheDir/java-db and
	// downloaded only when an image holds a Java archive.
	JavaRepositories []string
	// Offline never touches the network: the DB must already be there.
	// Without a Java DB, jars are identified by their pom.properties only
	// (see Result.Warnings).
	Offline bool
	// Insecure allows plain HTTP and unverified TLS for the repositories.
	Insecure bool
	// Username and Password authenticate to the Repositories' registry.
	Username, Password string
	// JavaUsername and JavaPassword authenticate to the JavaRepositories'
	// registry. The two pairs are kept apart so that a mirror's password
	// is never sent to trivy's public Java DB repositories.
	JavaUsername, JavaPassword string
}

// DiscardLibraryLogs stops trivy's logging. trivy logs through the
// process-wide slog default, and until its logger is set up it installs a
// default that buffers every record in memory. lotse reports for trivy, so
// its CLI calls this once at start (ci.Run); this package never changes
// the process on its own.
func DiscardLibraryLogs() { tlog.InitLogger(false, true) }

// ErrNoDB is returned offline when the cache has no DB.
var ErrNoDB = errors.New("no vulnerability DB")

// dbInUse serialises Scanners: trivy-db has one process-wide handle.
var dbInUse sync.Mutex

// Scanner matches packages against an open vulnerability DB.
type Scanner struct {
	cfg    DB
	log    *slog.Logger
	closed bool
	// noJavaDB is set offline when CacheDir has no Java DB: trivy then
	// reads an empty one in the temporary directory emptyJavaDB.
	noJavaDB    bool
	emptyJavaDB string
}

// Open makes sure the DB is present and fresh (downloading it unless
// offline) and opens it.
func Open(ctx context.Context, cfg DB, log *slog.Logger) (*Scanner, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.CacheDir == "" {
		return nil, fmt.Errorf("no cache directory for the vulnerability DB")
	}
	skipLicenseClassification()
	dbInUse.Lock()
	s := &Scanner{cfg: cfg, log: log}
	if err := s.prepare(ctx); err != nil {
		removeTrivyTempDir(log)
		dbInUse.Unlock()
		return nil, err
	}
	return s, nil
}

// trivy keeps the temporary files of its analyses (a layer's files for its
// post-analyzers, large files, nested jars) in one directory per process,
// named the first time it is needed (trivy-NNN in the system's temporary
// directory), and removes it only as its CLI exits. A program that links
// trivy has to do that itself, or every scan leaves a directory behind (on
// a shell runner, in its /tmp, for good). Open makes sure the directory is
// there (it was removed when the previous Scanner of this process closed);
// Close removes it, once nothing of trivy's runs any more (Scanners are one
// at a time).
func ensureTrivyTempDir() error {
	if err := os.MkdirAll(xos.TempDir(), 0o700); err != nil {
		return fmt.Errorf("trivy's temporary directory: %w", err)
	}
	return nil
}

func removeTrivyTempDir(log *slog.Logger) {
	if err := xos.Cleanup(); err != nil {
		log.Warn("remove trivy's temporary directory", "dir", xos.TempDir(), "err", err)
	}
}

func (s *Scanner) prepare(ctx context.Context) error {
	if err := ensureTrivyTempDir(); err != nil {
		return err
	}
	dir := db.Dir(s.cfg.CacheDir)
	_, statErr := os.Stat(trivydb.Path(dir))
	if s.cfg.Offline && errors.Is(statErr, fs.ErrNotExist) {
		return fmt.Errorf("%w in %s and --offline forbids downloading one: run once online, or copy a trivy DB (trivy.db and metadata.json) there", ErrNoDB, dir)
	}
	repos, err := parseRepositories(s.cfg.Repositories, DefaultDBRepositories, "--db-repository", s.cfg.Insecure)
	if err != nil {
		return err
	}
	client := db.NewClient(dir, true, db.WithDBRepository(repos))
	need, err := client.NeedsUpdate(ctx, app.Version(), s.cfg.Offline)
	if err != nil {
		return fmt.Errorf("vulnerability DB in %s: %w", dir, err)
	}
	if need {
		start := time.Now()
		if err := client.Download(ctx, dir, s.registryOptions()); err != nil {
			return fmt.Errorf("download vulnerability DB from %v: %w", s.cfg.Repositories, err)
		}
		s.log.InfoContext(ctx, "downloaded vulnerability DB", "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	}
	if err := s.prepareJavaDB(); err != nil {
		return err
	}
	// Read-only, as trivy opens it: jobs that share a cache directory
	// (a runner's shell executor) scan at the same time; a read-write
	// open would lock every other job out.
	if err := db.Init(dir); err != nil {
		s.removeEmptyJavaDB()
		return fmt.Errorf("open vulnerability DB: %w", err)
	}
	return nil
}

func parseRepositories(names, defaults []string, flag string, insecure bool) ([]name.Reference, error) {
	if len(names) == 0 {
		names = defaults
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	refs := make([]name.Reference, 0, len(names))
	for _, n := range names {
		r, err := name.ParseReference(n, opts...)
		if err != nil {
			return nil, fmt.Errorf("bad %s %q: %w", flag, n, err)
		}
		refs = append(refs, r)
	}
	return refs, nil
}

func (s *Scanner) registryOptions() ftypes.RegistryOptions {
	return registryOptions(s.cfg.Insecure, s.cfg.Username, s.cfg.Password)
}

func registryOptions(insecure bool, user, password string) ftypes.RegistryOptions {
	o := ftypes.RegistryOptions{Insecure: insecure}
	if user != "" {
		o.Credentials = []ftypes.Credential{{Username: user, Password: password}}
	}
	return o
}

// Close releases the DB.
func (s *Scanner) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	defer dbInUse.Unlock()
	s.removeEmptyJavaDB()
	removeTrivyTempDir(s.log)
	return trivydb.Close()
}

// Options tune one scan.
type Options struct {
	// IgnoreFile is a .trivyignore (or .trivyignore.yaml) file; findings it
	// lists are dropped. A missing default file is not an error.
	IgnoreFile string
	// Layers, when set, keeps each layer's analysis between scans (Image
	// only): a layer analysed before is read from it, not analysed again.
	Layers Cache
	// RepoTags and RepoDigests name the image in its repository (Image
	// only), as trivy names an image it reads from a registry
	// (RegistryNames).
	RepoTags, RepoDigests []string
}

// Cache keeps each layer's analysis between scans (lotse's
// internal/layercache): Get misses rather than return a damaged entry.
type Cache interface {
	Get(key string) ([]byte, bool)
	Put(key string, value []byte) error
}

// LayerStats says how many of an image's layers were analysed and how many
// were read from the layer cache.
type LayerStats struct{ Cached, Analysed int }

// Result is the outcome of one scan.
type Result struct {
	// Report is the scanner-independent view that gates and GitLab read.
	Report vuln.Report
	// Warnings say what the scan could not look at, for the user to read
	// (lotse prints them on stderr); the findings are still valid.
	Warnings []string
	// Layers counts the image's layers analysed and read from the cache.
	Layers LayerStats
	trivy  types.Report
}

func (s *Scanner) run(ctx context.Context, art artifact.Artifact, c cache.LocalArtifactCache, opts Options) (*Result, error) {
	if s.closed {
		return nil, fmt.Errorf("scanner is closed")
	}
	started := time.Now()
	backend := local.NewService(applier.NewApplier(c), ospkg.NewScanner(), langpkg.NewScanner(), vulnerability.NewClient(trivydb.Config{}))
	rep, err := trivyscan.NewService(backend, art).ScanArtifact(ctx, types.ScanOptions{
		PkgTypes:         []string{types.PkgTypeOS, types.PkgTypeLibrary},
		PkgRelationships: ftypes.Relationships,
		Scanners:         types.Scanners{types.VulnerabilityScanner},
		// trivy's default: the distribution's own rating, then NVD's.
		VulnSeveritySources: []dbtypes.SourceID{"auto"},
	})
	if err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	if err := filter(ctx, &rep, opts); err != nil {
		return nil, err
	}
	return &Result{Report: toReport(rep, started, time.Now()), trivy: rep}, nil
}

func filter(ctx context.Context, rep *types.Report, opts Options) error {
	if opts.IgnoreFile != "" {
		if _, err := os.Stat(opts.IgnoreFile); err != nil {
			return fmt.Errorf("ignore file: %w", err)
		}
	}
	err := result.Filter(ctx, *rep, result.FilterOptions{
		Severities: []dbtypes.Severity{dbtypes.SeverityUnknown, dbtypes.SeverityLow, dbtypes.SeverityMedium, dbtypes.SeverityHigh, dbtypes.SeverityCritical},
		IgnoreFile: opts.IgnoreFile,
	})
	if err != nil {
		return fmt.Errorf("apply ignore file %s: %w", filepath.Base(opts.IgnoreFile), err)
	}
	return nil
}

// toReport converts trivy's report into lotse's findings.
func toReport(rep types.Report, started, finished time.Time) vuln.Report {
	out := vuln.Report{
		Artifact:   rep.ArtifactName,
		Scanner:    vuln.Tool{ID: "trivy", Name: "Trivy", Version: app.Version(), Vendor: "Aqua Security", URL: "https://github.com/aquasecurity/trivy"},
		StartedAt:  started,
		FinishedAt: finished,
	}
	if os := rep.Metadata.OS; os != nil {
		out.OS = string(os.Family) + " " + os.Name
	}
	for _, r := range rep.Results {
		for _, v := range r.Vulnerabilities {
			sev, err := vuln.ParseSeverity(v.Severity)
			if err != nil {
				sev = vuln.Unknown
			}
			f := vuln.Finding{
				ID:               v.VulnerabilityID,
				Package:          v.PkgName,
				InstalledVersion: v.InstalledVersion,
				FixedVersion:     v.FixedVersion,
				Severity:         sev,
				Title:            v.Title,
				Description:      v.Description,
				PrimaryURL:       v.PrimaryURL,
				References:       v.References,
				Target:           r.Target,
				Type:             string(r.Type),
				Path:             v.PkgPath,
			}
			if p := v.PkgIdentifier.PURL; p != nil {
				if up := p.Qualifiers.Map()["upstream"]; up != "" {
					f.SourcePackage = up
				}
			}
			out.Findings = append(out.Findings, f)
		}
	}
	vuln.Sort(out.Findings)
	return out
}

// Trivy returns trivy's own JSON report, as `trivy --format json` writes it:
// the predicate of lotse's vulnerability attestation.
func (r *Result) Trivy(w io.Writer) error {
	return r.Write(context.Background(), w, FormatJSON)
}
