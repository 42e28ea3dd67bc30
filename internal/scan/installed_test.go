package scan

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lotse/lotse/internal/sbom"
	"github.com/lotse/lotse/test/fixture"
	"github.com/lotse/lotse/test/reportschema"
)

// requests is the metadata file of a requests distribution at path.
func requests(version, path string) fixture.File {
	return fixture.PythonMetadata("requests", version, path)
}

func layeredImage(t *testing.T, layers ...[]fixture.File) v1.Image {
	t.Helper()
	var ls []v1.Layer
	for _, files := range layers {
		l, err := fixture.Layer(files...)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := fixture.Image(ls...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Language packages an OS package manager installed (Debian's
// python3-requests, a Go binary from a .deb, Alpine's py3-requests) are
// patched and versioned by the distribution: `trivy image` leaves them out,
// deciding per layer from the package databases in the layer the file is
// read from. The scan of lotse's SBOM must leave out the same packages and
// keep the others: a third-party Debian package's files, a file pip
// rewrote in a later layer, a file no OS package lists.
func TestSBOMSystemInstalledPackages(t *testing.T) {
	ctx := context.Background()
	bin, err := fixture.GoBinary(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	goVer, err := fixture.GoModuleVersion()
	if err != nil {
		t.Fatal(err)
	}
	const (
		debReq     = "usr/lib/python3/dist-packages/requests-2.28.1.egg-info/PKG-INFO"           // python3-requests: left out
		debGo      = "usr/bin/fixture-go"                                                        // a Go binary from a .deb: left out
		thirdParty = "opt/gh/lib/python3/site-packages/requests-2.30.0.dist-info/METADATA"       // GitHub's .deb: kept
		replaced   = "usr/lib/python3/dist-packages/requests-2.27.0.egg-info/PKG-INFO"           // a .deb's, then pip's in layer 2: kept
		pip        = "usr/local/lib/python3.11/dist-packages/requests-2.31.0.dist-info/METADATA" // pip's: kept
		planted    = "usr/local/lib/python3.11/dist-packages/requests-2.22.0.dist-info/METADATA" // listed by a planted md5sums file: kept
		apkReq     = "usr/lib/python3.12/site-packages/requests-2.26.0.dist-info/METADATA"       // py3-requests: left out
		apkPip     = "usr/local/lib/python3.12/site-packages/requests-2.25.0.dist-info/METADATA"
		apkOver    = "usr/lib/python3.12/site-packages/requests-2.23.0.dist-info/METADATA" // py3-requests', then pip's in layer 3: kept
	)
	debs := append(slices.Clone(fixture.DebianPackages),
		fixture.DebPackage{Name: "python3-requests", Version: "2.28.1+dfsg-1", Source: "requests", Arch: "all", Files: []string{debReq}},
		fixture.DebPackage{Name: "fixture-go", Version: "1.0-1", Files: []string{debGo}},
		fixture.DebPackage{Name: "gh", Version: "2.40.0", Maintainer: "GitHub", Files: []string{thirdParty}},
		fixture.DebPackage{Name: "python3-requests-old", Version: "2.27.0-1", Arch: "all", Files: []string{replaced}},
	)
	// Layer 2 runs apt install curl (dpkg's status rewritten, the other
	// packages' md5sums untouched) and pip.
	var status fixture.File
	for _, f := range fixture.DebianFiles(append(slices.Clone(debs), fixture.DebPackage{Name: "curl", Version: "7.88.1-10+deb12u5"})) {
		if f.Path == "var/lib/dpkg/status" {
			status = f
		}
	}
	debian := layeredImage(t,
		append(fixture.DebianFiles(debs), requests("2.28.1", debReq), fixture.File{Path: debGo, Mode: 0o755, Data: bin},
			requests("2.30.0", thirdParty), requests("2.27.0", replaced)),
		[]fixture.File{status, requests("2.29.0", replaced), requests("2.31.0", pip)},
		// A Developer's layer, without apt, plants an md5sums file for an
		// installed package that lists their pip package: trivy still
		// reports it, and so must the SBOM scan.
		[]fixture.File{requests("2.22.0", planted), {
			Path: "var/lib/dpkg/info/python3-requests-old.md5sums",
			Data: []byte("00000000000000000000000000000000  " + replaced + "\n00000000000000000000000000000000  " + planted + "\n"),
		}},
	)
	apks := append(slices.Clone(fixture.AlpinePackages),
		fixture.AlpinePackage{Name: "py3-requests", Version: "2.26.0-r0", Origin: "py3-requests", Files: []string{apkReq, apkOver}})
	// Layer 2 runs apk add: it rewrites the database, which still lists
	// layer 1's py3-requests; and pip installs another requests. Layer 3,
	// without apk, rewrites one of py3-requests' files.
	alpine := layeredImage(t,
		append(fixture.AlpineFilesOf(apks), requests("2.26.0", apkReq), requests("2.23.0", apkOver)),
		append(fixture.AlpineFilesOf(append(slices.Clone(apks), fixture.AlpinePackage{Name: "curl", Version: "8.9.0-r0", Origin: "curl"})),
			requests("2.25.0", apkPip)),
		[]fixture.File{requests("2.24.0", apkOver)},
	)
	req := func(v string) string { return "CVE-2024-35195 requests@" + v + " MEDIUM" }
	goFinding := fmt.Sprintf("GHSA-lots-e000-0001 %s@%s HIGH", fixture.GoModule, goVer)
	for _, tc := range []struct {
		name        string
		img         v1.Image
		kept, out   []string
		installedBy int // components with the property
	}{
		{"debian", debian, []string{req("2.29.0"), req("2.30.0"), req("2.31.0"), req("2.22.0")}, []string{req("2.28.1"), req("2.27.0"), goFinding}, 5}, // python3-requests, the Go binary's three modules, gh
		{"alpine", alpine, []string{req("2.25.0"), req("2.24.0")}, []string{req("2.26.0"), req("2.23.0")}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openScanner(t)
			res := scanImage(t, s, tc.img)
			want := keys(res.Report.Findings)
			for _, k := range tc.kept {
				if !slices.Contains(want, k) {
					t.Errorf("image scan lacks %q: %q", k, want)
				}
			}
			for _, k := range tc.out {
				if slices.Contains(want, k) {
					t.Errorf("image scan reports %q, a package the OS installed", k)
				}
			}
			doc := sbomOf(t, tc.img)
			b, err := doc.Bytes(sbom.CycloneDXJSON)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(b), `"name":"`+sbom.InstalledByProperty+`"`); n != tc.installedBy {
				t.Errorf("%d %s properties, want %d", n, sbom.InstalledByProperty, tc.installedBy)
			}
			// lotse's SPDX carries the mark as annotations, and its scan
			// leaves out the same packages.
			if b, err = doc.Bytes(sbom.SPDXJSON); err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(b), `"comment":"`+sbom.InstalledByProperty+`: SPDXRef-`); n != tc.installedBy {
				t.Errorf("%d %s annotations in the SPDX, want %d", n, sbom.InstalledByProperty, tc.installedBy)
			}
			if err := reportschema.Validate(reportschema.SPDX, b); err != nil {
				t.Errorf("the SPDX with annotations: %v", err)
			}
			if got := keys(scanSBOM(t, s, doc, sbom.SPDXJSON).Report.Findings); !slices.Equal(got, want) {
				t.Errorf("SPDX scan findings:\n got %q\nwant %q", got, want)
			}
			sameAsImage(t, s, tc.img, doc, res)
		})
	}
}

// The scan's name for the property is the SBOM's.
func TestInstalledByProperty(t *testing.T) {
	if installedByProperty != sbom.InstalledByProperty {
		t.Fatalf("scan reads %q, sbom writes %q", installedByProperty, sbom.InstalledByProperty)
	}
}

// A Rocky Linux 8 image with a real RPM database (CentOS 8.2's, with
// module streams): the image scan finds what the fixture DB says, looking
// nodejs up by its module stream (nodejs:10), and leaves out python3-six's
// metadata, which the RPM database lists; the scan of lotse's SBOM finds
// the same, from the vendor, the module stream and the mark syft's
// CycloneDX does not carry on its own.
func TestRPMFindings(t *testing.T) {
	img, err := fixture.RockyImage()
	if err != nil {
		t.Fatal(err)
	}
	s := openScanner(t)
	res := scanImage(t, s, img)
	if got, want := keys(res.Report.Findings), expected(t, "rocky"); !slices.Equal(got, want) {
		t.Errorf("image scan findings:\n got %q\nwant %q", got, want)
	}
	doc := sbomOf(t, img)
	b, err := doc.Bytes(sbom.CycloneDXJSON)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), `"name":"`+sbom.InstalledByProperty+`"`); n != 1 {
		t.Errorf("%d %s properties, want 1 (python3-six's metadata)", n, sbom.InstalledByProperty)
	}
	// From lotse's SPDX too: the vendor is the supplier, the release the
	// end of the version, the module stream trivy's own annotation.
	if b, err = doc.Bytes(sbom.SPDXJSON); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"comment":"Modularitylabel: nodejs:10:`) {
		t.Error("the SPDX gives nodejs no module stream")
	}
	if err := reportschema.Validate(reportschema.SPDX, b); err != nil {
		t.Errorf("the SPDX: %v", err)
	}
	if got := keys(scanSBOM(t, s, doc, sbom.SPDXJSON).Report.Findings); !slices.Equal(got, keys(res.Report.Findings)) {
		t.Errorf("SPDX scan findings:\n got %q\nwant %q", got, keys(res.Report.Findings))
	}
	sameAsImage(t, s, img, doc, res)
}
