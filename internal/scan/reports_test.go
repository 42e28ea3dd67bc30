package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/lotse/lotse/internal/sbom"
	"github.com/lotse/lotse/internal/vuln"
	"github.com/lotse/lotse/test/fixture"
	"github.com/lotse/lotse/test/reportschema"
)

// TestReportsValidate writes, for every fixture image (and a clean one with
// no OS and no packages), the reports lotse release writes: GitLab's
// container-scanning report, the CycloneDX and the SPDX SBOM; each must
// validate against the full published schema of the version it declares.
// GitLab drops a security report that does not validate, without a word.
func TestReportsValidate(t *testing.T) {
	clean, err := fixture.Layer(fixture.File{Path: "/srv/index.html", Data: []byte("<p>hello</p>\n")})
	if err != nil {
		t.Fatal(err)
	}
	cleanImg, err := fixture.Image(clean)
	if err != nil {
		t.Fatal(err)
	}
	images := append(fixtureImages(t), fixtureImage{"clean", cleanImg})
	s := openScanner(t)
	const ref = "registry.example.com/team/app:1.0"
	for _, fi := range images {
		t.Run(fi.name, func(t *testing.T) {
			ctx := context.Background()
			res, err := s.Image(ctx, fi.img, ref, Options{})
			if err != nil {
				t.Fatal(err)
			}
			gl, err := vuln.MarshalGitLab(vuln.ToGitLab(res.Report, ref, vuln.Tool{ID: "lotse", Name: "lotse", Version: "test", Vendor: "lotse", URL: "https://github.com/lotse/lotse"}))
			if err != nil {
				t.Fatal(err)
			}
			if err := reportschema.Validate(reportschema.ContainerScanning, gl); err != nil {
				t.Errorf("%v\n%s", err, gl)
			}
			// The clean image has nothing to report; the others do, and
			// the report carries every finding.
			var rep struct{ Vulnerabilities []json.RawMessage }
			if err := json.Unmarshal(gl, &rep); err != nil {
				t.Fatal(err)
			}
			if want := len(expected(t, fi.name)); (want == 0) != (len(rep.Vulnerabilities) == 0) {
				t.Errorf("%d vulnerabilities in the GitLab report, %d findings expected", len(rep.Vulnerabilities), want)
			}

			doc, err := sbom.Generate(ctx, fi.img, ref, sbom.Tool{Name: "lotse", Version: "test"}, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			for f, kind := range map[sbom.Format]reportschema.Kind{sbom.CycloneDXJSON: reportschema.CycloneDX, sbom.SPDXJSON: reportschema.SPDX} {
				b, err := doc.Bytes(f)
				if err != nil {
					t.Fatal(err)
				}
				if f == sbom.CycloneDXJSON && !bytes.Contains(b, []byte(`"specVersion":"`+sbom.CycloneDXSpecVersion+`"`)) {
					t.Errorf("the CycloneDX SBOM does not declare spec version %s", sbom.CycloneDXSpecVersion)
				}
				if err := reportschema.Validate(kind, b); err != nil {
					t.Errorf("%s: %v\n%s", f, err, truncated(b))
				}
			}
		})
	}
}

func truncated(b []byte) []byte {
	if len(b) > 4000 {
		return append(bytes.Clone(b[:4000]), "..."...)
	}
	return b
}
