package sbom

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/anchore/syft/syft/format/cyclonedxjson"

	"github.com/lotse/lotse/internal/layercache"
	"github.com/lotse/lotse/test/fixture"
)

// A file Debian's python3-requests installed is marked with the package
// that installed it, whether the image is cataloged whole or layer by
// layer; a file of the same package that pip rewrote in a later layer is
// not. Apart from the mark, the document is syft's.
func TestInstalledBy(t *testing.T) {
	const (
		apt = "usr/lib/python3/dist-packages/requests-2.28.1.egg-info/PKG-INFO"
		pip = "usr/lib/python3/dist-packages/urllib3-1.26.12.egg-info/PKG-INFO"
	)
	pkgs := append(slices.Clone(fixture.DebianPackages),
		fixture.DebPackage{Name: "python3-requests", Version: "2.28.1+dfsg-1", Source: "requests", Arch: "all", Files: []string{apt, pip}})
	l1, err := fixture.Layer(append(fixture.DebianFiles(pkgs), fixture.PythonMetadata("requests", "2.28.1", apt), fixture.PythonMetadata("urllib3", "1.26.12", pip))...)
	if err != nil {
		t.Fatal(err)
	}
	// apt installs curl (dpkg's status rewritten, the md5sums untouched);
	// pip upgrades urllib3 over Debian's.
	var status fixture.File
	for _, f := range fixture.DebianFiles(append(slices.Clone(pkgs), fixture.DebPackage{Name: "curl", Version: "7.88.1-10+deb12u5"})) {
		if f.Path == "var/lib/dpkg/status" {
			status = f
		}
	}
	l2, err := fixture.Layer(status, fixture.PythonMetadata("urllib3", "2.2.2", pip))
	if err != nil {
		t.Fatal(err)
	}
	img, err := fixture.Image(l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	whole := catalog(t, img, nil)
	lc, err := layercache.Open(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cdx(t, catalog(t, img, lc)), cdx(t, whole); got != want {
		t.Errorf("by layer:\n%s\nwhole:\n%s", got, want)
	}

	b, err := whole.Bytes(CycloneDXJSON)
	if err != nil {
		t.Fatal(err)
	}
	var doc cdxDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{} // name@version → bom-ref
	marks := map[string][]string{}
	for _, c := range doc.Components {
		refs[c.Name+"@"+c.Version] = c.BOMRef
		for _, p := range c.Properties {
			if p.Name == InstalledByProperty {
				marks[c.Name+"@"+c.Version] = append(marks[c.Name+"@"+c.Version], p.Value)
			}
		}
	}
	owner := refs["python3-requests@2.28.1+dfsg-1"]
	if owner == "" || refs["requests@2.28.1"] == "" || refs["urllib3@2.2.2"] == "" {
		t.Fatalf("components: %v", refs)
	}
	if want := map[string][]string{"requests@2.28.1": {owner}}; len(marks) != 1 || !slices.Equal(marks["requests@2.28.1"], want["requests@2.28.1"]) {
		t.Errorf("marked %v, want %v", marks, want)
	}

	// Without lotse's property, syft's own encoder writes the same.
	enc, err := cyclonedxjson.NewFormatEncoderWithConfig(cyclonedxjson.EncoderConfig{Version: CycloneDXSpecVersion})
	if err != nil {
		t.Fatal(err)
	}
	var syftOut bytes.Buffer
	if err := enc.Encode(&syftOut, *whole.s); err != nil {
		t.Fatal(err)
	}
	if got, want := normalize(t, b, true), normalize(t, syftOut.Bytes(), false); got != want {
		t.Errorf("lotse's CycloneDX without its property:\n%s\nsyft's:\n%s", got, want)
	}
}

type cdxDoc struct {
	Components []struct {
		BOMRef     string `json:"bom-ref"`
		Name       string `json:"name"`
		Version    string `json:"version"`
		Properties []struct{ Name, Value string }
	} `json:"components"`
}

// normalize drops what differs between two encodings (serial number,
// timestamp) and, with dropLotse, lotse's properties.
func normalize(t *testing.T, b []byte, dropLotse bool) string {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "serialNumber")
	delete(doc["metadata"].(map[string]any), "timestamp")
	delete(doc["metadata"].(map[string]any), "tools") // see TestCreditTools
	if dropLotse {
		for _, c := range doc["components"].([]any) {
			c := c.(map[string]any)
			if props, ok := c["properties"].([]any); ok {
				c["properties"] = slices.DeleteFunc(props, func(p any) bool {
					return strings.HasPrefix(p.(map[string]any)["name"].(string), "lotse:")
				})
			}
		}
	}
	out, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// lotse's CycloneDX names lotse as the tool that wrote it, without syft's
// author, and syft, the library that cataloged, with its version.
func TestCreditTools(t *testing.T) {
	img, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	b, err := generate(t, img).Bytes(CycloneDXJSON)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Metadata struct {
			Tools struct {
				Components []struct{ Type, Author, Name, Version string }
			}
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(doc.Metadata.Tools.Components)
	want := fmt.Sprint([]struct{ Type, Author, Name, Version string }{{"application", "", "lotse", "test"}, {"library", "anchore", "syft", syftVersion()}})
	if got != want {
		t.Errorf("tools %s, want %s", got, want)
	}
}
