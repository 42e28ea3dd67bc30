package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	trivydb "github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy/pkg/db"
	bolt "go.etcd.io/bbolt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	trivycmd "github.com/aquasecurity/trivy/pkg/commands"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	xos "github.com/aquasecurity/trivy/pkg/x/os"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/package-url/packageurl-go"

	"github.com/lotse/lotse/internal/sbom"
	"github.com/lotse/lotse/internal/vuln"
	"github.com/lotse/lotse/test/fixture"
)

// cacheDir holds the fixture DB, written once for the package's tests.
var cacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lotse-scan-test")
	if err != nil {
		panic(err)
	}
	if err := fixture.WriteVulnDB(dir, time.Now()); err != nil {
		panic(err)
	}
	if err := fixture.WriteJavaDB(dir, time.Now()); err != nil {
		panic(err)
	}
	cacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func openScanner(t *testing.T) *Scanner {
	t.Helper()
	s, err := Open(context.Background(), DB{CacheDir: cacheDir, Offline: true}, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type fixtureImage struct {
	name string
	img  v1.Image
}

func fixtureImages(t *testing.T) []fixtureImage {
	t.Helper()
	deb, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	alp, err := fixture.AlpineImage()
	if err != nil {
		t.Fatal(err)
	}
	gob, err := fixture.GoImage(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	java, err := fixture.JavaImage()
	if err != nil {
		t.Fatal(err)
	}
	lang, err := fixture.LangImage()
	if err != nil {
		t.Fatal(err)
	}
	return []fixtureImage{{"debian", deb}, {"alpine", alp}, {"go", gob}, {"java", java}, {"lang", lang}}
}

// sbomOf is lotse's SBOM of img.
func sbomOf(t *testing.T, img v1.Image) *sbom.SBOM {
	t.Helper()
	doc, err := sbom.Generate(context.Background(), img, "fixture.invalid/app:1", sbom.Tool{Name: "lotse", Version: "test"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// scanSBOM scans doc, encoded in format f.
func scanSBOM(t *testing.T, s *Scanner, doc *sbom.SBOM, f sbom.Format) *Result {
	t.Helper()
	b, err := doc.Bytes(f)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.SBOM(context.Background(), bytes.NewReader(b), "sbom.json", Options{})
	if err != nil {
		t.Fatalf("SBOM(%s): %v", f, err)
	}
	return res
}

// scanImage is s's scan of img, named as the tests name images.
func scanImage(t *testing.T, s *Scanner, img v1.Image) *Result {
	t.Helper()
	res, err := s.Image(context.Background(), img, "fixture.invalid/app:1", Options{})
	if err != nil {
		t.Fatalf("Image: %v", err)
	}
	return res
}

// sameAsImage checks that scanning doc, lotse's CycloneDX SBOM of img,
// finds what the image scan res found, with the same files and targets,
// and that `trivy image` finds it too. It closes s (trivy opens the DB).
func sameAsImage(t *testing.T, s *Scanner, img v1.Image, doc *sbom.SBOM, res *Result) {
	t.Helper()
	want := keys(res.Report.Findings)
	sres := scanSBOM(t, s, doc, sbom.CycloneDXJSON)
	if got := keys(sres.Report.Findings); !slices.Equal(got, want) {
		t.Errorf("SBOM scan findings:\n got %q\nwant %q", got, want)
	}
	if got, want := places(sres.Report.Findings), places(res.Report.Findings); !slices.Equal(got, want) {
		t.Errorf("SBOM scan findings' files and targets:\n got %q\nwant %q", got, want)
	}
	s.Close()
	if got := trivyImage(t, img); !slices.Equal(got, want) {
		t.Errorf("trivy image findings:\n got %q\nwant %q", got, want)
	}
}

// keys renders findings as "ID package@version SEVERITY", sorted.
func keys(fs []vuln.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID+" "+f.Package+"@"+f.InstalledVersion+" "+f.Severity.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// places is each language-package finding with the file and the target it
// is reported in (OS packages' targets name the scanned artifact).
func places(fs []vuln.Finding) []string {
	var out []string
	for _, f := range fs {
		if f.Path != "" || !strings.Contains(f.Target, "(") {
			out = append(out, f.ID+" "+f.Package+"@"+f.InstalledVersion+" path="+f.Path+" target="+f.Target)
		}
	}
	slices.Sort(out)
	return out
}

// expected lists the findings of image; withoutJavaDB leaves out those that
// only the Java DB identifies.
func expected(t *testing.T, image string) []string { return expectedFindings(t, image, false) }

func expectedFindings(t *testing.T, image string, withoutJavaDB bool) []string {
	t.Helper()
	ver, err := fixture.GoModuleVersion()
	if err != nil {
		t.Fatal(err)
	}
	sev := map[string]string{}
	for _, a := range fixture.Advisories {
		sev[a.ID] = a.Severity.String()
	}
	var out []string
	for _, e := range fixture.Expected(ver) {
		if e.Image == image && !(withoutJavaDB && e.JavaDB) {
			out = append(out, e.ID+" "+e.Package+"@"+e.Version+" "+sev[e.ID])
		}
	}
	slices.Sort(out)
	return out
}

// trivyImage runs the real `trivy image` command, in process, on a docker
// archive of img, and returns its findings.
func trivyImage(t *testing.T, img v1.Image) []string {
	t.Helper()
	dir := t.TempDir()
	archive := filepath.Join(dir, "image.tar")
	tag, _ := name.NewTag("fixture.invalid/app:1")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	b := runTrivyImage(t, "--input", archive)
	var rep struct {
		Results []struct {
			Vulnerabilities []struct{ VulnerabilityID, PkgName, InstalledVersion, Severity string }
		}
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rep.Results {
		for _, v := range r.Vulnerabilities {
			got = append(got, v.VulnerabilityID+" "+v.PkgName+"@"+v.InstalledVersion+" "+v.Severity)
		}
	}
	slices.Sort(got)
	return slices.Compact(got)
}

// runTrivyImage runs `trivy image --scanners vuln` in process, offline
// against the fixture DB, on the image args name, and returns its JSON
// report. Like a Scanner, it holds the process's DB handle, and trivy's
// per-process temporary directory is there while it runs and removed after
// (as trivy's CLI removes it when it exits).
func runTrivyImage(t *testing.T, args ...string) []byte {
	t.Helper()
	dbInUse.Lock()
	defer dbInUse.Unlock()
	if err := ensureTrivyTempDir(); err != nil {
		t.Fatal(err)
	}
	defer removeTrivyTempDir(slog.New(slog.DiscardHandler))
	out := filepath.Join(t.TempDir(), "trivy.json")
	app := trivycmd.NewApp()
	app.SetArgs(append([]string{"image", "--quiet", "--cache-dir", cacheDir, "--skip-db-update", "--skip-java-db-update",
		"--skip-check-update", "--skip-version-check", "--offline-scan", "--disable-telemetry", "--scanners", "vuln",
		"--format", "json", "--output", out}, args...))
	if err := app.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("trivy image: %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTrivyTempDirRemoved checks that a Scanner leaves no directory of
// trivy's behind once closed (trivy's CLI removes its per-process directory
// as it exits; lotse links trivy, so its Scanner does), and that the next
// Scanner of the process scans as well: the directory is made again.
func TestTrivyTempDirRemoved(t *testing.T) {
	deb, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	want := expected(t, "debian")
	for i := range 2 {
		s, err := Open(context.Background(), DB{CacheDir: cacheDir, Offline: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		dir := xos.TempDir()
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			s.Close()
			t.Fatalf("scanner %d: trivy's temporary directory %s is not there: %v", i, dir, err)
		}
		// dpkg's files go through the directory: the Debian image's
		// analysis creates temporary files in it.
		res := scanImage(t, s, deb)
		if got := keys(res.Report.Findings); !slices.Equal(got, want) {
			t.Errorf("scanner %d: findings %q, want %q", i, got, want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("scanner %d: %s is left after Close (stat: %v)", i, dir, err)
		}
	}
}

// TestFindings checks, for every fixture image, that lotse finds exactly the
// expected CVEs on every affected binary package, scanning the image and
// scanning the SBOM syft wrote of it, and that `trivy image` finds the same.
func TestFindings(t *testing.T) {
	for _, fi := range fixtureImages(t) {
		t.Run(fi.name, func(t *testing.T) {
			want := expected(t, fi.name)
			if len(want) == 0 {
				t.Fatal("no expectations: the test would assert nothing")
			}

			s := openScanner(t)
			res, err := s.Image(context.Background(), fi.img, "fixture.invalid/app:1", Options{})
			if err != nil {
				t.Fatalf("Image: %v", err)
			}
			if got := keys(res.Report.Findings); !slices.Equal(got, want) {
				t.Errorf("image scan findings:\n got %q\nwant %q", got, want)
			}
			if len(res.Warnings) != 0 {
				t.Errorf("warnings with every DB present: %q", res.Warnings)
			}

			doc := sbomOf(t, fi.img)
			// syft names jars by pom.properties, manifest and file name,
			// and records each jar's SHA-1 (its CycloneDX as a hash, its
			// SPDX as the package's checksum), which SBOM looks up in the
			// Java DB as trivy's image analysis does.
			for _, f := range []sbom.Format{sbom.CycloneDXJSON, sbom.SPDXJSON} {
				sres := scanSBOM(t, s, doc, f)
				if got := keys(sres.Report.Findings); !slices.Equal(got, want) {
					t.Errorf("%s SBOM scan findings:\n got %q\nwant %q", f, got, want)
				}
				// Each finding also names the file and the target `trivy
				// image` names; from SPDX, but the jars inside another
				// (SPDX names the outer jar only).
				want := places(res.Report.Findings)
				if f == sbom.SPDXJSON {
					want = places(slices.Collect(func(yield func(vuln.Finding) bool) {
						for _, fd := range res.Report.Findings {
							if strings.Contains(fd.Path, ".jar/") || strings.Contains(fd.Path, ".war/") {
								fd.Path = ""
							}
							if !yield(fd) {
								return
							}
						}
					}))
				}
				if got := places(sres.Report.Findings); !slices.Equal(got, want) {
					t.Errorf("%s SBOM scan findings' files and targets:\n got %q\nwant %q", f, got, want)
				}
			}
			s.Close()

			if got := trivyImage(t, fi.img); !slices.Equal(got, want) {
				t.Errorf("trivy image findings:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestIgnoreFile(t *testing.T) {
	img, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	ignore := filepath.Join(t.TempDir(), ".trivyignore")
	if err := os.WriteFile(ignore, []byte("# accepted until the next base image\nCVE-2024-0727\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := openScanner(t)
	res, err := s.Image(context.Background(), img, "x", Options{IgnoreFile: ignore})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys(res.Report.Findings) {
		if strings.HasPrefix(k, "CVE-2024-0727 ") { // both libssl3 and openssl
			t.Errorf("ignored finding still reported: %s", k)
		}
	}
	if len(res.Report.Findings) != len(expected(t, "debian"))-2 {
		t.Errorf("got %d findings, want the %d not ignored", len(res.Report.Findings), len(expected(t, "debian"))-2)
	}
	if _, err := s.Image(context.Background(), img, "x", Options{IgnoreFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("a missing ignore file was accepted")
	}
}

func TestOfflineWithoutDB(t *testing.T) {
	_, err := Open(context.Background(), DB{CacheDir: t.TempDir(), Offline: true}, nil)
	if err == nil || !strings.Contains(err.Error(), "no vulnerability DB") || !strings.Contains(err.Error(), "--offline") {
		t.Fatalf("Open offline without DB = %v", err)
	}
}

func TestWriteFormats(t *testing.T) {
	img, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	s := openScanner(t)
	res, err := s.Image(context.Background(), img, "fixture.invalid/app:1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for f, marker := range map[Format]string{FormatTable: "CVE-2024-0727", FormatJSON: `"VulnerabilityID": "CVE-2024-0727"`, FormatSARIF: `"$schema"`} {
		var b bytes.Buffer
		if err := res.Write(context.Background(), &b, f); err != nil {
			t.Fatalf("Write(%s): %v", f, err)
		}
		if !strings.Contains(b.String(), marker) {
			t.Errorf("%s output lacks %q:\n%s", f, marker, b.String())
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("ParseFormat(xml) accepted")
	}
}

func TestRestoreSource(t *testing.T) {
	// The upstream qualifier forms syft writes, on packages as trivy's
	// decoder leaves them (source defaulted to the package itself).
	for _, tc := range []struct {
		purl, name, release             string
		srcName, srcVersion, srcRelease string
		srcEpoch                        int
	}{
		{"pkg:deb/debian/libssl3@3.0.11-1~deb12u2?upstream=openssl", "libssl3", "1~deb12u2", "openssl", "3.0.11", "1~deb12u2", 0},
		{"pkg:deb/debian/libc6@2.36-9?upstream=glibc%402.36-8", "libc6", "9", "glibc", "2.36", "8", 0},
		{"pkg:deb/debian/zlib1g@1.2.13-1?upstream=zlib%401%3A1.2.13-2", "zlib1g", "1", "zlib", "1.2.13", "2", 1},
		{"pkg:apk/alpine/libcrypto3@3.3.1-r0?upstream=openssl", "libcrypto3", "", "openssl", "3.3.1-r0", "", 0},
		{"pkg:deb/debian/openssl@3.0.11-1", "openssl", "1", "openssl", "3.0.11", "1", 0},
	} {
		p, err := packageurl.FromString(tc.purl)
		if err != nil {
			t.Fatal(err)
		}
		ver, _, _ := strings.Cut(p.Version, "-")
		if tc.release == "" {
			ver = p.Version
		}
		pkgs := ftypes.Packages{{
			Name: tc.name, Version: ver, Release: tc.release,
			SrcName: tc.name, SrcVersion: ver, SrcRelease: tc.release,
			Identifier: ftypes.PkgIdentifier{PURL: &p},
		}}
		restoreSource(&pkgs)
		got := pkgs[0]
		if got.SrcName != tc.srcName || got.SrcVersion != tc.srcVersion || got.SrcRelease != tc.srcRelease || got.SrcEpoch != tc.srcEpoch {
			t.Errorf("%s: source = %q %q-%q epoch %d; want %q %q-%q epoch %d", tc.purl,
				got.SrcName, got.SrcVersion, got.SrcRelease, got.SrcEpoch, tc.srcName, tc.srcVersion, tc.srcRelease, tc.srcEpoch)
		}
	}
}

// The vuln attestation's predicate must carry the findings in cosign's
// shape; a bare trivy report would be attested as an empty predicate.
func TestVulnPredicate(t *testing.T) {
	img, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	s := openScanner(t)
	res, err := s.Image(context.Background(), img, "fixture.invalid/app:1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var pred, report bytes.Buffer
	if err := res.WriteVulnPredicate(context.Background(), &pred); err != nil {
		t.Fatal(err)
	}
	if err := res.Write(context.Background(), &report, FormatJSON); err != nil {
		t.Fatal(err)
	}
	wrapped, err := VulnPredicate(context.Background(), report.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"written": pred.Bytes(), "wrapped": wrapped} {
		var p struct {
			Scanner struct {
				URI    string
				Result struct {
					Results []struct {
						Vulnerabilities []struct{ VulnerabilityID string }
					}
				}
			}
		}
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n := 0
		for _, r := range p.Scanner.Result.Results {
			n += len(r.Vulnerabilities)
		}
		if !strings.HasPrefix(p.Scanner.URI, "pkg:github/aquasecurity/trivy@") || n != len(expected(t, "debian")) {
			t.Errorf("%s predicate: uri %q, %d findings, want %d", name, p.Scanner.URI, n, len(expected(t, "debian")))
		}
	}
	// The scan's time, not the time it was wrapped: the attested report of
	// last month is last month's scan.
	var meta struct {
		Metadata struct{ ScanStartedOn, ScanFinishedOn time.Time }
	}
	if err := json.Unmarshal(pred.Bytes(), &meta); err != nil || !meta.Metadata.ScanFinishedOn.Equal(res.Report.FinishedAt) ||
		!meta.Metadata.ScanStartedOn.Equal(res.Report.FinishedAt) {
		t.Errorf("written predicate: metadata %+v, want the scan's end %v (%v)", meta.Metadata, res.Report.FinishedAt, err)
	}
	var rep struct{ CreatedAt time.Time }
	if err := json.Unmarshal(report.Bytes(), &rep); err != nil || rep.CreatedAt.IsZero() {
		t.Fatalf("trivy's report has no CreatedAt: %v", err)
	}
	if err := json.Unmarshal(wrapped, &meta); err != nil || !meta.Metadata.ScanFinishedOn.Equal(rep.CreatedAt) {
		t.Errorf("wrapped predicate: metadata %+v, want the report's CreatedAt %v (%v)", meta.Metadata, rep.CreatedAt, err)
	}
	undated, err := VulnPredicate(context.Background(), bytes.Replace(report.Bytes(), []byte(`"CreatedAt"`), []byte(`"CreatedAtX"`), 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(undated, &meta); err != nil || !meta.Metadata.ScanFinishedOn.IsZero() {
		t.Errorf("a report without CreatedAt: metadata %+v, want the zero time (%v)", meta.Metadata, err)
	}
	same, err := VulnPredicate(context.Background(), pred.Bytes())
	if err != nil || !bytes.Equal(same, pred.Bytes()) {
		t.Errorf("a predicate was not kept as it is: %v", err)
	}
	if _, err := VulnPredicate(context.Background(), []byte(`{"bomFormat":"CycloneDX"}`)); err == nil {
		t.Error("an SBOM was accepted as a scan report")
	}
}

// Jobs that share a cache directory open the DB at the same time: lotse
// holds it read-only (a shared lock), so another reader is not locked out.
func TestDBIsSharedWithOtherProcesses(t *testing.T) {
	s := openScanner(t)
	other, err := bolt.Open(trivydb.Path(db.Dir(cacheDir)), 0o444, &bolt.Options{ReadOnly: true, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("a second reader of the DB lotse holds: %v", err)
	}
	other.Close()
	s.Close()
}
