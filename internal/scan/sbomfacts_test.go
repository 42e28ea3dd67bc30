package scan

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/aquasecurity/trivy/pkg/dependency/parser/java/jar"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/types"
)

type fakeJavaDB struct {
	known  map[string]bool           // group:artifact
	bySHA1 map[string]jar.Properties // sha1
	asked  []string
	closed bool
}

func (f *fakeJavaDB) Exists(g, a string) (bool, error) { return f.known[g+":"+a], nil }
func (f *fakeJavaDB) SearchBySHA1(s string) (jar.Properties, error) {
	f.asked = append(f.asked, s)
	if p, ok := f.bySHA1[s]; ok {
		return p, nil
	}
	return jar.Properties{}, jar.ArtifactNotFoundErr
}
func (f *fakeJavaDB) Close() error { f.closed = true; return nil }

func jarPkg(ref, name, version string) ftypes.Package {
	return ftypes.Package{Name: name, Version: version, Identifier: ftypes.PkgIdentifier{BOMRef: ref}}
}

// Jars are named as trivy's jar analysis names them: looked up by SHA-1
// when syft found no version, or coordinates the Java DB does not know.
func TestResolveJars(t *testing.T) {
	db := &fakeJavaDB{
		known: map[string]bool{"org.yaml:snakeyaml": true},
		bySHA1: map[string]jar.Properties{
			"aaa": {GroupID: "com.fasterxml.jackson.core", ArtifactID: "jackson-databind", Version: "2.9.8"},
			"ccc": {GroupID: "org.example", ArtifactID: "real", Version: "2.0"},
		},
	}
	bom := &types.SBOM{Applications: []ftypes.Application{{Type: ftypes.Jar, Packages: []ftypes.Package{
		jarPkg("no-version", "databind:databind", ""),
		jarPkg("named", "org.yaml:snakeyaml", "1.33"),
		jarPkg("guessed", "guessed:real", "2.0"),
		jarPkg("unknown", "internal:thing", ""),
		jarPkg("no-sha1", "x:y", ""),
	}}}}
	facts := map[string]componentFacts{
		"no-version": {path: "opt/lib/databind.jar", sha1: "aaa"},
		"named":      {path: "app.jar", sha1: "bbb"},
		"guessed":    {path: "real.jar", sha1: "ccc"},
		"unknown":    {path: "thing.jar", sha1: "ddd"},
	}
	looked, err := resolveJars(bom, facts, func() (javaDB, error) { return db, nil })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range bom.Applications[0].Packages {
		purl := ""
		if p.Identifier.PURL != nil {
			purl = p.Identifier.PURL.String()
		}
		got = append(got, p.Name+"@"+p.Version+" "+purl)
	}
	want := []string{
		"com.fasterxml.jackson.core:jackson-databind@2.9.8 pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.9.8",
		"org.yaml:snakeyaml@1.33 ",
		"org.example:real@2.0 pkg:maven/org.example/real@2.0",
		"internal:thing@ ",
		"x:y@ ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("jars:\n got %q\nwant %q", got, want)
	}
	if !slices.Equal(db.asked, []string{"aaa", "ccc", "ddd"}) {
		t.Errorf("looked up %q, want the jars without a version or with unknown coordinates", db.asked)
	}
	if !slices.Equal(looked, []string{"opt/lib/databind.jar", "real.jar", "thing.jar"}) {
		t.Errorf("looked = %q", looked)
	}
	if !db.closed {
		t.Error("the Java DB was not closed")
	}

	// No jar with a SHA-1: the Java DB is not opened (online, it would be
	// downloaded).
	opened := false
	if _, err := resolveJars(&types.SBOM{Applications: []ftypes.Application{{Type: ftypes.Jar, Packages: []ftypes.Package{jarPkg("no-sha1", "x:y", "")}}}}, facts,
		func() (javaDB, error) { opened = true; return db, nil }); err != nil || opened {
		t.Errorf("without SHA-1s: err %v, opened %t", err, opened)
	}
	// A Java DB that cannot be opened fails the scan, naming why.
	_, err = resolveJars(&types.SBOM{Applications: []ftypes.Application{{Type: ftypes.Jar, Packages: []ftypes.Package{jarPkg("no-version", "d:d", "")}}}}, facts,
		func() (javaDB, error) { return nil, errors.New("offline") })
	if err == nil || err.Error() != "the SBOM's jars need trivy's Java DB, to name them by SHA-1: offline" {
		t.Errorf("Java DB that cannot be opened: %v", err)
	}
}

// A jar whose SBOM component carries its SHA-1 as the package's checksum
// (syft's SPDX, another tool's CycloneDX), where lotse reads no facts, is
// looked up too: scanning an SPDX document found one finding fewer than
// the CycloneDX of the same image (a jar only the Java DB names).
func TestResolveJarsByPackageDigest(t *testing.T) {
	db := &fakeJavaDB{bySHA1: map[string]jar.Properties{
		"0123456789abcdef0123456789abcdef01234567": {GroupID: "com.fasterxml.jackson.core", ArtifactID: "jackson-databind", Version: "2.9.8"},
	}}
	databind := jarPkg("", "databind:databind", "")
	databind.FilePath = "opt/lib/databind.jar"
	databind.Digest = "sha1:0123456789ABCDEF0123456789ABCDEF01234567"
	other := jarPkg("", "x:y", "")
	other.Digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	short := jarPkg("", "z:z", "")
	short.Digest = "sha1:0123"
	bom := &types.SBOM{Applications: []ftypes.Application{{Type: ftypes.Jar, Packages: []ftypes.Package{databind, other, short}}}}
	looked, err := resolveJars(bom, nil, func() (javaDB, error) { return db, nil })
	if err != nil {
		t.Fatal(err)
	}
	if got := bom.Applications[0].Packages[0]; got.Name != "com.fasterxml.jackson.core:jackson-databind" || got.Version != "2.9.8" {
		t.Errorf("jar = %s@%s, want it named from the Java DB by its SHA-1", got.Name, got.Version)
	}
	if !slices.Equal(db.asked, []string{"0123456789abcdef0123456789abcdef01234567"}) {
		t.Errorf("looked up %q: only a SHA-1 is one", db.asked)
	}
	if !slices.Equal(looked, []string{"opt/lib/databind.jar"}) {
		t.Errorf("looked = %q, want the package's file", looked)
	}
}

// Language packages get their files, aggregated ecosystems per package,
// the others one application per file; trivy's own applications are left.
func TestRestorePaths(t *testing.T) {
	bom := &types.SBOM{Applications: []ftypes.Application{
		{Type: ftypes.GoBinary, Packages: []ftypes.Package{jarPkg("a1", "stdlib", "1.22"), jarPkg("b1", "stdlib", "1.21"), jarPkg("a2", "golang.org/x/net", "0.1")}},
		{Type: ftypes.PythonPkg, Packages: []ftypes.Package{jarPkg("p", "requests", "2.31.0")}},
		{Type: ftypes.NodePkg, FilePath: "trivy/made/this", Packages: []ftypes.Package{jarPkg("n", "lodash", "4.17.20")}},
	}}
	facts := map[string]componentFacts{
		"a1": {path: "usr/bin/a"}, "a2": {path: "usr/bin/a"}, "b1": {path: "usr/bin/b"},
		"p": {path: "usr/lib/python3.12/site-packages/requests-2.31.0.dist-info/METADATA"},
		"n": {path: "ignored"},
	}
	restorePaths(bom, facts)
	var got []string
	for _, app := range bom.Applications {
		for _, p := range app.Packages {
			got = append(got, string(app.Type)+" "+app.FilePath+" "+p.Name+" "+p.FilePath)
		}
	}
	want := []string{
		"python-pkg  requests usr/lib/python3.12/site-packages/requests-2.31.0.dist-info/METADATA",
		"node-pkg trivy/made/this lodash ",
		"gobinary usr/bin/a stdlib ",
		"gobinary usr/bin/a golang.org/x/net ",
		"gobinary usr/bin/b stdlib ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("applications:\n got %q\nwant %q", got, want)
	}
	before := len(bom.Applications)
	restorePaths(bom, nil) // not CycloneDX: nothing to restore
	if len(bom.Applications) != before {
		t.Error("restorePaths without facts changed the SBOM")
	}
}

func TestSyftFacts(t *testing.T) {
	doc := `{"bomFormat":"CycloneDX","components":[
	 {"bom-ref":"j","externalReferences":[{"type":"build-meta","hashes":[{"alg":"SHA-1","content":"61c517938014c29a962d8e6b303815be49182d4c"}]}],
	  "properties":[{"name":"syft:location:0:path","value":"/app/app.jar"},{"name":"syft:metadata:virtualPath","value":"/app/app.jar:BOOT-INF/lib/x.jar"}]},
	 {"bom-ref":"p","properties":[{"name":"syft:location:0:path","value":"/usr/lib/x/METADATA"}],
	  "components":[{"bom-ref":"nested","hashes":[{"alg":"SHA-1","content":"b10a8db164e0754105b7a99be72e3fe5b10a8db1"}]}]},
	 {"bom-ref":"evil","hashes":[{"alg":"SHA-1","content":"'; DROP TABLE indices; --"}],
	  "properties":[{"name":"syft:location:0:path","value":"/usr/lib/x\nlotse: gate passed"}]}]}`
	got := syftFacts([]byte(doc))
	want := map[string]componentFacts{
		"j":      {path: "app/app.jar/BOOT-INF/lib/x.jar", sha1: "61c517938014c29a962d8e6b303815be49182d4c"},
		"p":      {path: "usr/lib/x/METADATA"},
		"nested": {sha1: "b10a8db164e0754105b7a99be72e3fe5b10a8db1"},
		// A path that would write a line of its own into lotse's output
		// is quoted; a SHA-1 that is not one is ignored.
		"evil": {path: `"usr/lib/x\nlotse: gate passed"`},
	}
	if len(got) != len(want) {
		t.Fatalf("facts = %v", got)
	}
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%s: %+v, want %+v", k, got[k], v)
		}
	}
	if syftFacts([]byte(`{"spdxVersion":"SPDX-2.3"}`)) != nil || syftFacts([]byte(`not json`)) != nil {
		t.Error("facts from a document that is not CycloneDX")
	}
}
