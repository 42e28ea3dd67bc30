package ci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/lotse/lotse/internal/atomicfile"
	"github.com/lotse/lotse/internal/layercache"
	"github.com/lotse/lotse/internal/scan"
	"github.com/lotse/lotse/internal/vuln"
)

// dbFlags say where the vulnerability DB is and may come from.
type dbFlags struct {
	cacheDir  string
	repos     []string
	javaRepos []string
	offline   bool
	// layersMiB bounds the layer cache (CACHE-DIR/layers); 0 turns it off.
	layersMiB int
}

func (a *app) addDBFlags(fs *pflag.FlagSet, df *dbFlags) {
	fs.StringVar(&df.cacheDir, "cache-dir", a.defaultCacheDir(), "directory of the vulnerability DB (env LOTSE_CACHE_DIR); cache it between jobs")
	var repos []string
	if r := a.env.get("LOTSE_DB_REPOSITORY"); r != "" {
		repos = strings.Split(r, ",")
	}
	fs.StringSliceVar(&df.repos, "db-repository", repos, "OCI repository of the trivy DB, e.g. a Harbor mirror (env LOTSE_DB_REPOSITORY; default trivy's)")
	var javaRepos []string
	if r := a.env.get("LOTSE_JAVA_DB_REPOSITORY"); r != "" {
		javaRepos = strings.Split(r, ",")
	}
	fs.StringSliceVar(&df.javaRepos, "java-db-repository", javaRepos, "OCI repository of trivy's Java DB, which names jars by SHA-1; downloaded only for images with jars (env LOTSE_JAVA_DB_REPOSITORY; default trivy's)")
	fs.BoolVar(&df.offline, "offline", false, "never download the DB (fail when there is none; without a Java DB, jars are named by pom.properties only); with release, also no transparency log")
}

// defaultCacheDir is LOTSE_CACHE_DIR, else .cache/lotse in the project
// directory in GitLab CI (so `cache:` can keep it), else the user cache.
func (a *app) defaultCacheDir() string {
	if d := a.env.get("LOTSE_CACHE_DIR"); d != "" {
		return d
	}
	if d := a.env.get("CI_PROJECT_DIR"); d != "" {
		return filepath.Join(d, ".cache", "lotse")
	}
	if d := a.env.get("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "lotse")
	}
	if h := a.env.get("HOME"); h != "" {
		return filepath.Join(h, ".cache", "lotse")
	}
	return filepath.Join(os.TempDir(), "lotse-cache")
}

// addLayerCacheFlag adds --layer-cache-size to the commands that analyse
// image layers (scan, release).
func addLayerCacheFlag(fs *pflag.FlagSet, df *dbFlags) {
	fs.IntVar(&df.layersMiB, "layer-cache-size", 512, "MiB of per-layer analysis results (and layer outlines) kept in CACHE-DIR/layers, so that a registry's layers seen before are not read or analysed again (least recently used dropped first; 0 turns it off)")
}

// openLayerCache opens CACHE-DIR/layers, or nothing with
// --layer-cache-size 0. Close it with closeLayerCache.
func (a *app) openLayerCache(df *dbFlags) (*layercache.Cache, error) {
	if df.layersMiB < 0 {
		return nil, usagef("--layer-cache-size %d: want MiB, or 0 for no layer cache", df.layersMiB)
	}
	return layercache.Open(filepath.Join(df.cacheDir, "layers"), int64(df.layersMiB)<<20)
}

// closeLayerCache bounds the layer cache to its size; a failure costs only
// the next job's time, so it is logged, not returned.
func (a *app) closeLayerCache(ctx context.Context, lc *layercache.Cache) {
	if n, err := lc.Trim(); err != nil {
		a.log.WarnContext(ctx, "layer cache not trimmed", "dir", lc.Dir(), "err", err)
	} else if lc != nil {
		a.log.DebugContext(ctx, "layer cache", "dir", lc.Dir(), "bytes", n)
	}
}

func (a *app) openScanner(ctx context.Context, df *dbFlags, rf *registryFlags) (*scan.Scanner, error) {
	cfg := scan.DB{CacheDir: df.cacheDir, Repositories: df.repos, JavaRepositories: df.javaRepos, Offline: df.offline, Insecure: rf.insecure}
	if len(df.repos) > 0 {
		cfg.Username, cfg.Password = a.credentialsFor(rf, df.repos[0])
	}
	if len(df.javaRepos) > 0 {
		cfg.JavaUsername, cfg.JavaPassword = a.credentialsFor(rf, df.javaRepos[0])
	}
	return scan.Open(ctx, cfg, a.log)
}

// printWarnings tells on stderr what a scan could not look at.
func (a *app) printWarnings(res *scan.Result) {
	for _, w := range res.Warnings {
		printf(a.stderr, "lotse: warning: %s\n", w)
	}
}

// gateFlags decide when findings fail the job.
type gateFlags struct {
	failOn     string
	ignoreFile string
}

func (a *app) addGateFlags(fs *pflag.FlagSet, gf *gateFlags) {
	fs.StringVar(&gf.failOn, "fail-on", a.env.get("LOTSE_FAIL_ON"), "exit 3 when a finding at or above this severity is not ignored: low, medium, high or critical (env LOTSE_FAIL_ON)")
	fs.StringVar(&gf.ignoreFile, "ignore-file", ".trivyignore", "findings to ignore, in .trivyignore format (a missing default file is fine)")
}

// threshold parses --fail-on; ok is false when no gate is set.
func (gf *gateFlags) threshold() (vuln.Severity, bool, error) {
	if gf.failOn == "" {
		return 0, false, nil
	}
	s, err := vuln.ParseSeverity(gf.failOn)
	if err != nil {
		return 0, false, &UsageError{Err: fmt.Errorf("--fail-on: %w", err)}
	}
	return s, true, nil
}

// options checks the gate's flags (--fail-on) and turns the ignore file
// into scan options; the default file may be missing, an explicit one may
// not.
func (gf *gateFlags) options(cmd *cobra.Command) (scan.Options, error) {
	if _, _, err := gf.threshold(); err != nil {
		return scan.Options{}, err
	}
	if gf.ignoreFile == "" {
		return scan.Options{}, nil
	}
	if _, err := os.Stat(gf.ignoreFile); err != nil {
		if errors.Is(err, fs.ErrNotExist) && !cmd.Flags().Changed("ignore-file") {
			return scan.Options{}, nil
		}
		return scan.Options{}, &UsageError{Err: fmt.Errorf("--ignore-file: %w", err)}
	}
	return scan.Options{IgnoreFile: gf.ignoreFile}, nil
}

// gate evaluates the findings against --fail-on: a GateError when findings
// at or above the threshold remain, nil when they do not or no gate is set.
// It prints nothing; see printGate.
func gate(rep vuln.Report, gf *gateFlags) error {
	th, ok, err := gf.threshold()
	if err != nil || !ok {
		return err
	}
	if bad := vuln.AtOrAbove(rep.Findings, th); len(bad) > 0 {
		return &GateError{Reason: fmt.Sprintf("%d finding(s) at or above %s", len(bad), th)}
	}
	return nil
}

// printGate tells on stderr how the gate went and which findings failed it,
// and returns gate's verdict.
func (a *app) printGate(rep vuln.Report, gf *gateFlags) error {
	err := gate(rep, gf)
	th, ok, _ := gf.threshold()
	if !ok {
		return err
	}
	if err == nil {
		printf(a.stderr, "gate passed: no finding at or above %s (%s)\n", th, vuln.Summary(rep.Findings))
		return nil
	}
	bad := vuln.AtOrAbove(rep.Findings, th)
	printf(a.stderr, "gate failed: %d finding(s) at or above %s:\n", len(bad), th)
	for _, f := range bad {
		fix := "no fix yet"
		if f.FixedVersion != "" {
			fix = "fixed in " + f.FixedVersion
		}
		printf(a.stderr, "  %-8s %s in %s %s (%s)\n", f.Severity, f.ID, f.Package, f.InstalledVersion, fix)
	}
	return err
}

func (a *app) scanCmd() *cobra.Command {
	var (
		rf           registryFlags
		df           dbFlags
		gf           gateFlags
		sbomFile     string
		format       string
		output       string
		gitlabReport string
	)
	cmd := &cobra.Command{
		Use:   "scan [IMAGE | --sbom FILE]",
		Short: "Scan an image or SBOM for vulnerabilities (trivy) and gate on them",
		Long: `Scan an image, or the packages an SBOM lists, for vulnerabilities with trivy,
print them, write GitLab's container-scanning report, and fail (exit 3) when a
finding at or above --fail-on is not ignored.

The findings are those 'trivy image' reports for the same image and DB. A
CycloneDX SBOM from syft keeps which source package each binary package comes
from (libssl3 from openssl), each package's file and each jar's SHA-1, which
is looked up in trivy's Java DB as 'trivy image' does: scanning the SBOM
gives the findings, with their files, of scanning the image. lotse's own
SBOM also marks the language packages an OS package installed (Debian's
python3-requests, a Go binary from a .deb), which 'trivy image' leaves out;
a syft CLI SBOM does not, so its scan may report them.`,
		Example: `  lotse scan registry.example.com/team/app:1.2.3 --fail-on high --gitlab-report gl-container-scanning-report.json
  lotse scan --sbom gl-sbom-app.cdx.json --offline --format sarif -o trivy.sarif`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case sbomFile == "" && len(args) != 1:
				return usagef("want one IMAGE, or --sbom FILE")
			case sbomFile != "" && len(args) != 0:
				return usagef("give either IMAGE or --sbom FILE, not both")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := scan.ParseFormat(format)
			if err != nil {
				return &UsageError{Err: err}
			}
			opts, err := gf.options(cmd)
			if err != nil {
				return err
			}
			if err := rf.resolve(a, cmd.InOrStdin()); err != nil {
				return err
			}
			ctx := cmd.Context()
			var (
				target string
				img    *loaded
				sbomFh *os.File
			)
			if sbomFile != "" {
				target = sbomFile
				if sbomFh, err = os.Open(sbomFile); err != nil {
					return fmt.Errorf("--sbom: %w", err)
				}
				defer sbomFh.Close()
			} else {
				target = args[0]
				if img, err = a.load(ctx, target, &rf, ""); err != nil {
					return err
				}
				defer img.close()
			}
			var lc *layercache.Cache
			if img != nil {
				if lc, err = a.openLayerCache(&df); err != nil {
					return err
				}
				defer a.closeLayerCache(ctx, lc)
				if lc != nil { // no typed nil in the interface
					opts.Layers = lc
				}
			}
			sc, err := a.openScanner(ctx, &df, &rf)
			if err != nil {
				return err
			}
			defer sc.Close()
			var res *scan.Result
			if err := a.section("scan", "Vulnerability scan of "+target, func() error {
				if img != nil {
					// trivy (and the layer cache) name a layer's analysis
					// by what the image claims about it: unpack checks the
					// claims before trivy reads a layer.
					unpacked, err := img.unpack(ctx, nil, lc, outlineSeen)
					if err != nil {
						return err
					}
					a.log.DebugContext(ctx, "layers unpacked", "outlines", unpacked.Outlines())
					opts.RepoTags, opts.RepoDigests = img.repoNames()
					res, err = sc.Image(ctx, unpacked, target, opts)
					return err
				}
				res, err = sc.SBOM(ctx, sbomFh, sbomFile, opts)
				return err
			}); err != nil {
				return err
			}
			a.printWarnings(res)
			var out bytes.Buffer
			if err := res.Write(ctx, &out, f); err != nil {
				return err
			}
			if output == "" || output == "-" {
				if _, err := a.stdout.Write(out.Bytes()); err != nil {
					return err
				}
			} else if err := atomicfile.Write(output, out.Bytes()); err != nil {
				return err
			}
			if gitlabReport != "" {
				if err := a.writeGitLabReport(gitlabReport, res.Report, target); err != nil {
					return err
				}
			}
			a.log.InfoContext(ctx, "scan finished", "target", target, "findings", len(res.Report.Findings))
			return a.printGate(res.Report, &gf)
		},
	}
	a.addRegistryFlags(cmd.Flags(), &rf)
	a.addDBFlags(cmd.Flags(), &df)
	addLayerCacheFlag(cmd.Flags(), &df)
	a.addGateFlags(cmd.Flags(), &gf)
	cmd.Flags().StringVar(&sbomFile, "sbom", "", "scan the packages of this SBOM (CycloneDX or SPDX JSON) instead of an image")
	cmd.Flags().StringVar(&format, "format", "table", "table, json or sarif")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the report to FILE instead of standard output")
	cmd.Flags().StringVar(&gitlabReport, "gitlab-report", "", "also write GitLab's container-scanning report (schema 15.x) to FILE")
	return cmd
}

func (a *app) writeGitLabReport(path string, rep vuln.Report, image string) error {
	gl := vuln.ToGitLab(rep, image, vuln.Tool{ID: "lotse", Name: "lotse", Version: a.info.Version, Vendor: "lotse", URL: "https://github.com/lotse/lotse"})
	b, err := vuln.MarshalGitLab(gl)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b)
}
