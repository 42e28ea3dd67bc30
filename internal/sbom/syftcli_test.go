package sbom

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/anchore/clio"
	syftcli "github.com/anchore/syft/cmd/syft/cli"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/lotse/lotse/internal/layercache"
	"github.com/lotse/lotse/test/fixture"
)

// namedImage is a test image and what a subtest calls it.
type namedImage struct {
	name string
	img  v1.Image
}

// fixtureImages are the fixture images the SBOM is checked on: Debian with
// Java and apt layers, Alpine, the language ecosystems, and Java services.
func fixtureImages(t *testing.T) []namedImage {
	t.Helper()
	alpine, err := fixture.AlpineImage()
	if err != nil {
		t.Fatal(err)
	}
	lang, err := fixture.LangImage()
	if err != nil {
		t.Fatal(err)
	}
	java, err := fixture.JavaImage()
	if err != nil {
		t.Fatal(err)
	}
	return []namedImage{
		{"debian, java and apt layers", layeredImage(t, "12")},
		{"alpine", alpine},
		{"python, node, .NET, PHP and rust", lang},
		{"java", java},
	}
}

// The SBOM lotse writes holds what `syft scan` writes of the same image:
// every component with its hashes (the files' SHA-1 and SHA-256, where
// syft's library alone gives SHA-256), licenses, CPEs and properties, and
// every dependency; cataloged whole, one layer at a time, and from the
// layer cache; and the unknowns of syft's JSON. Cataloged whole, its syft
// JSON and SPDX are syft's too. Only what names the document (serial
// number, namespace, timestamps, tool, the image's name and its own
// relations) and lotse's own property (lotse:installedBy) differ.
func TestSBOMIsSyftCLIs(t *testing.T) {
	elf, err := fixture.UnknownELF()
	if err != nil {
		t.Fatal(err)
	}
	images := append(fixtureImages(t),
		namedImage{"an executable without a package", layeredImage(t, "12", fixture.File{Path: "usr/local/bin/tool", Mode: 0o755, Data: elf})})
	for _, tc := range images {
		t.Run(tc.name, func(t *testing.T) {
			want, wantJSON, wantSPDX := syftScan(t, tc.img)
			wantUnknowns := unknowns(t, wantJSON)
			if tc.name == "an executable without a package" && !slices.Contains(wantUnknowns, "/usr/local/bin/tool: unknowns-labeler: no package identified in executable file") {
				t.Fatalf("syft's unknowns %q lack the executable: the test would not tell the configurations apart", wantUnknowns)
			}
			if !strings.Contains(wantSPDX, `"SPDXRef-Package-`) {
				t.Fatal("syft's SPDX lists no packages")
			}
			if !strings.Contains(want, `"SHA-1"`) {
				t.Fatal("syft's SBOM has no SHA-1 digests: the test would not tell the configurations apart")
			}
			lc, err := layercache.Open(t.TempDir(), 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			for _, how := range []struct {
				name string
				lc   Cache
			}{{"whole", nil}, {"by layer", lc}, {"from the layer cache", lc}} {
				s := catalog(t, tc.img, how.lc)
				b, err := s.Bytes(CycloneDXJSON)
				if err != nil {
					t.Fatal(err)
				}
				if got := comparable(t, b); got != want {
					t.Errorf("%s: lotse's CycloneDX differs from syft's:\n%s", how.name, firstDifference(got, want))
				}
				// The files syft expected a package in and found none are
				// only in syft's own format.
				if b, err = s.Bytes(SyftJSON); err != nil {
					t.Fatal(err)
				}
				if got := unknowns(t, b); !slices.Equal(got, wantUnknowns) {
					t.Errorf("%s: unknowns\n got %q\nwant %q (syft's)", how.name, got, wantUnknowns)
				}
				// Cataloged whole (lotse sbom), syft's JSON and SPDX are
				// syft's: the merge of layer catalogs does not rebuild
				// every relationship these formats hold.
				if how.lc == nil {
					if got, want := syftJSONComparable(t, b), syftJSONComparable(t, wantJSON); got != want {
						t.Errorf("%s: lotse's syft JSON differs from syft's:\n%s", how.name, firstDifference(got, want))
					}
					if b, err = s.Bytes(SPDXJSON); err != nil {
						t.Fatal(err)
					}
					if got := spdxComparable(t, b); got != wantSPDX {
						t.Errorf("%s: lotse's SPDX differs from syft's:\n%s", how.name, firstDifference(got, wantSPDX))
					}
				}
			}
		})
	}
}

// runSyftEnv makes the test binary run as the syft command line.
const runSyftEnv = "LOTSE_TEST_RUN_SYFT"

func TestMain(m *testing.M) {
	if os.Getenv(runSyftEnv) == "1" {
		cmd := syftcli.Command(clio.Identification{Name: "syft", Version: syftVersion()})
		cmd.SetArgs(os.Args[1:])
		if err := cmd.Execute(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// syftScan runs the syft command line on a docker archive of img and
// returns its CycloneDX (comparable), its syft JSON and its SPDX
// (comparable).
func syftScan(t *testing.T, img v1.Image) (cdx string, syftJSON []byte, spdx string) {
	t.Helper()
	dir := t.TempDir()
	archive := filepath.Join(dir, "image.tar")
	tag, _ := name.NewTag("registry.example.com/team/app:1.0")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "syft.cdx.json")
	// The syft command sets syft's and stereoscope's process-wide logger
	// and redaction store, once per process: it runs as a process of its
	// own, the test binary started as syft (TestMain).
	outJSON := filepath.Join(dir, "syft.json")
	outSPDX := filepath.Join(dir, "syft.spdx.json")
	cmd := exec.Command(os.Args[0], "scan", "docker-archive:"+archive, "-q", "-o", "cyclonedx-json="+out, "-o", "syft-json="+outJSON, "-o", "spdx-json="+outSPDX)
	cmd.Env = append(os.Environ(), runSyftEnv+"=1",
		"HOME="+dir, "XDG_CONFIG_HOME="+dir, // no user configuration
		"SYFT_CHECK_FOR_APP_UPDATE=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("syft scan: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	j, err := os.ReadFile(outJSON)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := os.ReadFile(outSPDX)
	if err != nil {
		t.Fatal(err)
	}
	return comparable(t, b), j, spdxComparable(t, sp)
}

// spdxComparable is an SPDX document's packages, files and relationships,
// as indented JSON: not the image's own package (named otherwise), the
// document's name, namespace and creation, nor what relates to them.
func spdxComparable(t *testing.T, doc []byte) string {
	t.Helper()
	var d struct {
		Packages      []map[string]any `json:"packages"`
		Files         any              `json:"files"`
		Relationships []map[string]any `json:"relationships"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	root := map[string]bool{"SPDXRef-DOCUMENT": true}
	for _, r := range d.Relationships {
		if r["spdxElementId"] == "SPDXRef-DOCUMENT" && r["relationshipType"] == "DESCRIBES" {
			root[r["relatedSpdxElement"].(string)] = true
		}
	}
	d.Packages = slices.DeleteFunc(d.Packages, func(p map[string]any) bool { return root[p["SPDXID"].(string)] })
	for _, p := range d.Packages { // lotse's own annotation
		anns, _ := p["annotations"].([]any)
		anns = slices.DeleteFunc(anns, func(a any) bool {
			c, _ := a.(map[string]any)["comment"].(string)
			return strings.HasPrefix(c, InstalledByProperty+": ") || strings.HasPrefix(c, trivyModularityLabel+": ")
		})
		if len(anns) == 0 {
			delete(p, "annotations")
		} else {
			p["annotations"] = anns
		}
	}
	d.Relationships = slices.DeleteFunc(d.Relationships, func(r map[string]any) bool {
		return root[r["spdxElementId"].(string)] || root[r["relatedSpdxElement"].(string)]
	})
	out, err := json.MarshalIndent(d, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// syftJSONComparable is a syft JSON document's packages, files and
// relationships, as indented JSON: not the source (the image, which lotse
// names otherwise) nor its relationships to the packages, nor the tool.
func syftJSONComparable(t *testing.T, doc []byte) string {
	t.Helper()
	var d struct {
		Artifacts             any              `json:"artifacts"`
		ArtifactRelationships []map[string]any `json:"artifactRelationships"`
		Files                 any              `json:"files"`
		Distro                any              `json:"distro"`
		Source                struct {
			ID string `json:"id"`
		} `json:"source"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	d.ArtifactRelationships = slices.DeleteFunc(d.ArtifactRelationships, func(r map[string]any) bool {
		return r["parent"] == d.Source.ID || r["child"] == d.Source.ID
	})
	d.Source.ID = ""
	out, err := json.MarshalIndent(d, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// unknowns lists a syft JSON document's unknowns as "path: unknown".
func unknowns(t *testing.T, doc []byte) []string {
	t.Helper()
	var d struct {
		Files []struct {
			Location struct{ Path string }
			Unknowns []string
		}
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range d.Files {
		for _, u := range f.Unknowns {
			out = append(out, f.Location.Path+": "+u)
		}
	}
	slices.Sort(out)
	return out
}

// comparable is a CycloneDX document's components and dependencies, with
// lotse's own property left out, as indented JSON.
func comparable(t *testing.T, doc []byte) string {
	t.Helper()
	var bom struct {
		Components []map[string]any `json:"components"`
		Deps       []struct {
			Ref       string   `json:"ref"`
			DependsOn []string `json:"dependsOn"`
		} `json:"dependencies"`
	}
	if err := json.Unmarshal(doc, &bom); err != nil {
		t.Fatal(err)
	}
	refs := map[string]bool{}
	for _, c := range bom.Components {
		refs[c["bom-ref"].(string)] = true
		props, _ := c["properties"].([]any)
		props = slices.DeleteFunc(props, func(p any) bool {
			return p.(map[string]any)["name"] == InstalledByProperty
		})
		if len(props) == 0 {
			delete(c, "properties")
		} else {
			c["properties"] = props
		}
	}
	slices.SortFunc(bom.Components, func(a, b map[string]any) int {
		return strings.Compare(a["bom-ref"].(string), b["bom-ref"].(string))
	})
	// The document's own component (the image, named differently) is
	// related to what it contains; the packages' relations are compared.
	bom.Deps = slices.DeleteFunc(bom.Deps, func(d struct {
		Ref       string   `json:"ref"`
		DependsOn []string `json:"dependsOn"`
	}) bool {
		return !refs[d.Ref]
	})
	slices.SortFunc(bom.Deps, func(a, b struct {
		Ref       string   `json:"ref"`
		DependsOn []string `json:"dependsOn"`
	}) int {
		return strings.Compare(a.Ref, b.Ref)
	})
	for _, d := range bom.Deps {
		slices.Sort(d.DependsOn)
	}
	out, err := json.MarshalIndent(bom, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// firstDifference shows where two long documents part.
func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			lo := max(0, i-8)
			return "lotse, from line " + strconv.Itoa(lo+1) + ":\n" + strings.Join(g[lo:min(len(g), i+4)], "\n") +
				"\nsyft:\n" + strings.Join(w[lo:min(len(w), i+4)], "\n")
		}
	}
	return "one is a prefix of the other (" + strconv.Itoa(len(g)) + " and " + strconv.Itoa(len(w)) + " lines)"
}
