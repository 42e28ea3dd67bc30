package sbom

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/CycloneDX/cyclonedx-go"
	"github.com/anchore/syft/syft/format/common/cyclonedxhelpers"
)

// syntheticBOM is a BOM of n components with what the encoding may treat
// differently: nested components, properties, hashes, licenses, empty
// lists (which the encoder's copy drops), fields newer than the spec
// lotse writes (which the conversion drops), and HTML characters.
func syntheticBOM(rng *rand.Rand, n int) *cyclonedx.BOM {
	bom := cyclonedx.NewBOM()
	bom.SerialNumber = "urn:uuid:00000000-0000-4000-8000-000000000000"
	bom.Metadata = &cyclonedx.Metadata{
		Timestamp: "2026-12-05T00:00:00Z",
		Component: &cyclonedx.Component{Type: cyclonedx.ComponentTypeContainer, Name: "registry.example.com/app", Version: "sha256:abc"},
		Tools:     &cyclonedx.ToolsChoice{Components: &[]cyclonedx.Component{{Type: cyclonedx.ComponentTypeApplication, Name: "lotse", Version: "test"}}},
	}
	comps := make([]cyclonedx.Component, n)
	var deps []cyclonedx.Dependency
	for i := range comps {
		c := cyclonedx.Component{
			BOMRef:  fmt.Sprintf("ref-%d", i),
			Type:    []cyclonedx.ComponentType{cyclonedx.ComponentTypeLibrary, cyclonedx.ComponentTypeFile, cyclonedx.ComponentTypeOS}[rng.IntN(3)],
			Name:    fmt.Sprintf("pkg-%d<&>", i),
			Version: fmt.Sprintf("1.%d", rng.IntN(100)),
		}
		switch rng.IntN(6) {
		case 0:
			c.Hashes = &[]cyclonedx.Hash{{Algorithm: cyclonedx.HashAlgoSHA256, Value: fmt.Sprintf("%064x", rng.Uint64())}}
		case 1:
			c.Hashes = &[]cyclonedx.Hash{} // empty
			c.Properties = &[]cyclonedx.Property{{Name: "syft:location:0:path", Value: "/usr/lib/x"}}
		case 2:
			c.Licenses = &cyclonedx.Licenses{{License: &cyclonedx.License{ID: "MIT"}}}
			ext := true
			c.IsExternal = &ext         // CycloneDX 1.7
			c.VersionRange = ">=1.0 <2" // CycloneDX 1.7
		case 3:
			c.Components = &[]cyclonedx.Component{{BOMRef: fmt.Sprintf("ref-%d-nested", i), Type: cyclonedx.ComponentTypeLibrary, Name: "nested"}}
		case 4:
			c.PackageURL = fmt.Sprintf("pkg:deb/debian/pkg-%d@1.0?arch=amd64", i)
			c.CPE = "cpe:2.3:a:pkg:pkg:1.0:*:*:*:*:*:*:*"
		}
		comps[i] = c
		if i > 0 && rng.IntN(4) == 0 {
			deps = append(deps, cyclonedx.Dependency{Ref: c.BOMRef, Dependencies: &[]string{comps[rng.IntN(i)].BOMRef}})
		}
	}
	bom.Components = &comps
	if len(deps) > 0 {
		bom.Dependencies = &deps
	}
	return bom
}

// The components encoded in two halves and spliced are what cyclonedx-go's
// EncodeVersion writes for the whole BOM, byte for byte: for synthetic
// BOMs around the split, and for the SBOMs of the fixture images split
// after every few components.
func TestEncodeCycloneDXSplit(t *testing.T) {
	check := func(name string, bom *cyclonedx.BOM, split int) {
		t.Helper()
		var want, got bytes.Buffer
		if err := encodeBOM(&want, bom); err != nil {
			t.Fatal(err)
		}
		if err := encodeCycloneDXSplit(&got, bom, split); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%s: split encoding differs from EncodeVersion's:\n%.2000s\nwant:\n%.2000s", name, got.Bytes(), want.Bytes())
		}
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 1, 2, 3, 7, splitComponents - 1, splitComponents, splitComponents + 1, 5003} {
		check(fmt.Sprintf("%d components", n), syntheticBOM(rng, n), splitComponents)
		check(fmt.Sprintf("%d components, split at 2", n), syntheticBOM(rng, n), 2)
	}
	noComponents := syntheticBOM(rng, 0)
	noComponents.Components = nil
	check("no components list", noComponents, 2)

	for _, img := range []string{"12", "11"} {
		s := catalog(t, layeredImage(t, img), nil)
		bom := cyclonedxhelpers.ToFormatModel(*s.s)
		addInstalledBy(bom, s.s, s.installed)
		creditTools(bom, s.s.Descriptor)
		check("debian "+img+" fixture", bom, 2)
	}
}

func BenchmarkEncodeCycloneDX(b *testing.B) {
	bom := syntheticBOM(rand.New(rand.NewPCG(1, 1)), 11800)
	for _, c := range []struct {
		name string
		f    func(w *bytes.Buffer) error
	}{
		{"EncodeVersion", func(w *bytes.Buffer) error { return encodeBOM(w, bom) }},
		{"split", func(w *bytes.Buffer) error { return encodeCycloneDX(w, bom) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var w bytes.Buffer
			for b.Loop() {
				w.Reset()
				if err := c.f(&w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
