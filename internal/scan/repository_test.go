package scan

import (
	"slices"
	"strings"
	"testing"

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/package-url/packageurl-go"

	"github.com/lotse/lotse/internal/sbom"
	"github.com/lotse/lotse/test/fixture"
)

// A Debian image whose OpenSSL packages come from a third-party repository
// (nginx.org's maintainer): `trivy image` does not match them against
// Debian's advisories, and neither does a scan of the image's SBOM.
func TestSBOMThirdPartyPackages(t *testing.T) {
	pkgs := slices.Clone(fixture.DebianPackages)
	for i, p := range pkgs {
		if p.Name == "openssl" || p.Name == "libssl3" {
			pkgs[i].Maintainer = "NGINX Packaging <nginx-packaging@f5.com>"
		}
	}
	l, err := fixture.Layer(fixture.DebianFiles(pkgs)...)
	if err != nil {
		t.Fatal(err)
	}
	img, err := fixture.Image(l)
	if err != nil {
		t.Fatal(err)
	}
	s := openScanner(t)
	res := scanImage(t, s, img)
	want := keys(res.Report.Findings)
	all := expected(t, "debian")
	if len(want) == 0 || len(want) >= len(all) || slices.ContainsFunc(want, func(k string) bool { return strings.Contains(k, "ssl") }) {
		t.Fatalf("image scan: %q; want Debian's findings without OpenSSL's (%q)", want, all)
	}
	doc := sbomOf(t, img)
	// From syft's SPDX too: its supplier is the maintainer.
	if got := keys(scanSBOM(t, s, doc, sbom.SPDXJSON).Report.Findings); !slices.Equal(got, want) {
		t.Errorf("SPDX scan findings:\n got %q\nwant %q", got, want)
	}
	sameAsImage(t, s, img, doc, res)
}

// RPMs are official when trivy's vendor rule says so (Amazon's may have
// no vendor) and keep their module stream; anything but syft's CycloneDX
// is left alone.
func TestRestoreRepositoriesRPM(t *testing.T) {
	rpm := func(ref string) ftypes.Package {
		return ftypes.Package{Name: ref, Identifier: ftypes.PkgIdentifier{BOMRef: ref, PURL: &packageurl.PackageURL{Type: packageurl.TypeRPM, Name: ref}}}
	}
	bom := types.SBOM{Packages: []ftypes.PackageInfo{{Packages: []ftypes.Package{rpm("redhat"), rpm("docker"), rpm("amazon"), rpm("unknown"), rpm("other-tool")}}}}
	facts := map[string]componentFacts{
		"redhat":     {syft: true, publisher: "Red Hat, Inc.", modularity: "nodejs:18:8090020231019152822:a75119d5"},
		"docker":     {syft: true, publisher: "Docker"},
		"amazon":     {syft: true, release: "1.amzn2023.0.1"},
		"other-tool": {publisher: "Red Hat, Inc."}, // not written by syft
	}
	restoreRepositories(&bom, facts)
	want := map[string]ftypes.RepositoryClass{
		"redhat": ftypes.RepositoryClassOfficial, "docker": ftypes.RepositoryClassThirdParty,
		"amazon": ftypes.RepositoryClassOfficial, "unknown": "", "other-tool": "",
	}
	for _, p := range bom.Packages[0].Packages {
		if p.Repository.Class != want[p.Name] {
			t.Errorf("%s: class %q, want %q", p.Name, p.Repository.Class, want[p.Name])
		}
		if wantLabel := facts[p.Name].modularity; p.Name != "other-tool" && p.Modularitylabel != wantLabel {
			t.Errorf("%s: module stream %q, want %q", p.Name, p.Modularitylabel, wantLabel)
		}
	}
}
