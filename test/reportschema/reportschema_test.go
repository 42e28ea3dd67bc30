package reportschema

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// Every vendored schema compiles, with all its $refs resolved offline.
func TestCompileAll(t *testing.T) {
	for kind, versions := range files {
		for v := range versions {
			if _, err := Compile(kind, v); err != nil {
				t.Errorf("%s %s: %v", kind, v, err)
			}
		}
	}
	if _, err := Compile(CycloneDX, "1.4"); err == nil {
		t.Error("a CycloneDX version without a vendored schema compiled")
	}
}

// The schemas reject what GitLab and SBOM consumers reject: they are not
// vacuous. Each case is a small valid report and a broken variant.
func TestRejects(t *testing.T) {
	gl, err := os.ReadFile("../../internal/vuln/testdata/gl-container-scanning-report.minimal.json")
	if err != nil {
		t.Fatal(err)
	}
	cdx := `{"bomFormat":"CycloneDX","specVersion":"1.6","version":1,"serialNumber":"urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
	  "components":[{"type":"library","name":"zlib","bom-ref":"a"}]}`
	spdx := `{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"x",
	  "documentNamespace":"https://example.com/x","creationInfo":{"created":"2026-01-01T00:00:00Z","creators":["Tool: lotse"]}}`
	cq := `[{"description":"d","check_name":"c","fingerprint":"f","severity":"major","location":{"path":"a.yaml","lines":{"begin":1}}}]`
	for _, tc := range []struct {
		name      string
		kind      Kind
		good, bad string
	}{
		{"gitlab null version", ContainerScanning, string(gl), strings.Replace(string(gl), `"version": "3.0.11-1~deb12u2"`, `"version": null`, 1)},
		{"gitlab no identifiers", ContainerScanning, string(gl), regexp.MustCompile(`(?s)"identifiers": \[.*?\]`).ReplaceAllString(string(gl), `"identifiers": []`)},
		{"gitlab identifier without value", ContainerScanning, string(gl), strings.Replace(string(gl), `"value": "CVE-`, `"valu": "CVE-`, 1)},
		{"gitlab zone in time", ContainerScanning, string(gl), strings.Replace(string(gl), `"2026-01-15T10:00:00"`, `"2026-01-15T10:00:00Z"`, 1)},
		{"gitlab undeclared version", ContainerScanning, string(gl), strings.Replace(string(gl), `"version": "15.0.7"`, `"version": "15.9.9"`, 1)},
		{"cyclonedx bad component type", CycloneDX, cdx, strings.Replace(cdx, `"library"`, `"potato"`, 1)},
		{"cyclonedx bad serial", CycloneDX, cdx, strings.Replace(cdx, `urn:uuid:`, `uuid:`, 1)},
		{"cyclonedx unknown property", CycloneDX, cdx, strings.Replace(cdx, `"version":1`, `"version":1,"extra":true`, 1)},
		{"spdx no namespace", SPDX, spdx, strings.Replace(spdx, `"documentNamespace":"https://example.com/x",`, ``, 1)},
		{"spdx no creators", SPDX, spdx, strings.Replace(spdx, `,"creators":["Tool: lotse"]`, ``, 1)},
		{"codequality bad severity", CodeQuality, cq, strings.Replace(cq, `"major"`, `"high"`, 1)},
		{"codequality line 0", CodeQuality, cq, strings.Replace(cq, `"begin":1`, `"begin":0`, 1)},
		{"codequality no line", CodeQuality, cq, strings.Replace(cq, `,"lines":{"begin":1}`, ``, 1)},
		{"codequality dot path", CodeQuality, cq, strings.Replace(cq, `"a.yaml"`, `"./a.yaml"`, 1)},
		{"codequality absolute path", CodeQuality, cq, strings.Replace(cq, `"a.yaml"`, `"/a.yaml"`, 1)},
		{"codequality no fingerprint", CodeQuality, cq, strings.Replace(cq, `"fingerprint":"f",`, ``, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.good == tc.bad {
				t.Fatal("the broken variant is the valid report")
			}
			if err := Validate(tc.kind, []byte(tc.good)); err != nil {
				t.Fatalf("valid report rejected: %v", err)
			}
			if err := Validate(tc.kind, []byte(tc.bad)); err == nil {
				t.Fatalf("broken report accepted:\n%s", tc.bad)
			}
		})
	}
}

// The code quality report may give positions instead of lines.
func TestCodeQualityPositions(t *testing.T) {
	cq := `[{"description":"d","check_name":"c","fingerprint":"f","severity":"info","location":{"path":"a.yaml","positions":{"begin":{"line":3}}}}]`
	if err := Validate(CodeQuality, []byte(cq)); err != nil {
		t.Fatal(err)
	}
}

// The validator is for tests only: no package of the commands lotse ships
// imports it or this package (trivy links jsonschema itself; that is not
// lotse's use).
func TestNotInBinaries(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "../../cmd/...")
	cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	own := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "github.com/lotse/lotse/") {
			continue
		}
		own++
		if f[0] == "github.com/lotse/lotse/test/reportschema" {
			t.Errorf("a command links %s", f[0])
		}
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, "github.com/santhosh-tekuri/jsonschema") {
				t.Errorf("%s imports %s", f[0], imp)
			}
		}
	}
	if own < 10 {
		t.Errorf("go list -deps listed %d of lotse's packages:\n%.500s", own, out)
	}
}
