package sbom

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/google/licensecheck"

	"github.com/lotse/lotse/test/fixture"
)

var update = flag.Bool("update", false, "write licensecheck.snapshot.gz from the licensecheck linked")

// licensecheckVersion is the version go.mod requires (a test binary does
// not record its modules' versions).
func licensecheckVersion(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/google/licensecheck").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// The embedded snapshot loads into a scanner equal, field by field, to the
// one licensecheck compiles; go test ./internal/sbom -run
// TestLicensecheckSnapshot -update makes it again after a licensecheck
// upgrade.
func TestLicensecheckSnapshot(t *testing.T) {
	built, err := licensecheck.NewScanner(licensecheck.BuiltinLicenses())
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		var b bytes.Buffer
		if err := writeLicensecheckSnapshot(&b, built, licensecheckVersion(t), licensecheck.BuiltinLicenses()); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("licensecheck.snapshot.gz", b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		licensecheckSnapshot = b.Bytes()
	}
	loaded, err := loadLicensecheck(licensecheckSnapshot, licensecheckVersion(t))
	if err != nil {
		t.Fatalf("%v: run go test ./internal/sbom -run TestLicensecheckSnapshot -update", err)
	}
	if !reflect.DeepEqual(loaded, built) {
		t.Fatal("the snapshot's scanner differs from licensecheck's: run go test ./internal/sbom -run TestLicensecheckSnapshot -update")
	}
	// It scans as the compiled one does.
	text := []byte(fixture.MITLicense)
	if got, want := loaded.Scan(text), built.Scan(text); !reflect.DeepEqual(got, want) || len(got.Match) == 0 {
		t.Errorf("loaded scanner: %+v, compiled: %+v", got, want)
	}
}

// A snapshot of another licensecheck, of other licenses, or damaged is
// not loaded: the scanner is compiled instead.
func TestLicensecheckSnapshotRefused(t *testing.T) {
	built, err := licensecheck.NewScanner(licensecheck.BuiltinLicenses())
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func(version string, ls []licensecheck.License) []byte {
		var b bytes.Buffer
		if err := writeLicensecheckSnapshot(&b, built, version, ls); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	version := licensecheckVersion(t)
	good := snapshot(version, licensecheck.BuiltinLicenses())
	if _, err := loadLicensecheck(good, version); err != nil {
		t.Fatalf("good snapshot: %v", err)
	}
	fewer := licensecheck.BuiltinLicenses()[1:]
	for name, b := range map[string][]byte{
		"other version":  snapshot("v0.0.1", licensecheck.BuiltinLicenses()),
		"other licenses": snapshot(version, fewer),
		"truncated":      good[:len(good)/2],
		"not gzip":       []byte("lotse licensecheck snapshot 1\n"),
	} {
		if s, err := loadLicensecheck(b, version); err == nil || s != nil {
			t.Errorf("%s: loaded", name)
		}
	}
	// A binary that does not know which licensecheck it links compiles.
	if _, err := loadLicensecheck(good, "unknown"); err == nil {
		t.Error("loaded without knowing licensecheck's version")
	}
}

func BenchmarkLoadLicensecheck(b *testing.B) {
	version := licensecheckVersion(b)
	for range b.N {
		if _, err := loadLicensecheck(licensecheckSnapshot, version); err != nil {
			b.Fatal(err)
		}
	}
}

// The build window opens only around compiling the scanner (a test binary
// does not know licensecheck's version, so it compiles), once, and closes
// when the scanner is built.
func TestBuildWindowOnlyWhileCompiling(t *testing.T) {
	calls := 0
	var built <-chan struct{}
	l := newLicenseScanner(nil, func(b <-chan struct{}) { calls++; built = b })
	l.build()
	l.build()
	if calls != 1 {
		t.Fatalf("window opened %d times, want once", calls)
	}
	select {
	case <-built:
	default:
		t.Error("window still open after the build")
	}
	if l.scanner == nil || l.err != nil {
		t.Fatalf("scanner %v, err %v", l.scanner, l.err)
	}
}
