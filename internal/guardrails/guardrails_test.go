package guardrails

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lotse/lotse/test/reportschema"
)

// testPolicy is the policy of the golden tests: every rule at its default,
// images from harbor.example.com only.
func testPolicy() Policy {
	return Policy{AllowedRegistries: []string{"harbor.example.com"}}
}

func newChecker(t *testing.T, p Policy) *Checker {
	t.Helper()
	c, err := NewChecker(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func checkFile(t *testing.T, c *Checker, file string) Report {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := c.Check(filepath.Base(file), data)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestGood checks that the compliant manifests have no findings and that
// every pod template in them was found.
func TestGood(t *testing.T) {
	want := map[string]int{ // workloads per file
		"deployment.yaml":    1,
		"statefulset.yaml":   1,
		"cronjob.yaml":       1,
		"job-and-pod.yaml":   2,
		"helm-template.yaml": 3,
	}
	files, _ := filepath.Glob("testdata/good/*.yaml")
	if len(files) != len(want) {
		t.Fatalf("good files %v, want %d", files, len(want))
	}
	c := newChecker(t, testPolicy())
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			rep := checkFile(t, c, f)
			if len(rep.Findings) != 0 {
				t.Errorf("findings:\n%s", rep.Text(SeverityMajor))
			}
			if rep.Workloads != want[filepath.Base(f)] {
				t.Errorf("workloads = %d, want %d", rep.Workloads, want[filepath.Base(f)])
			}
		})
	}
}

// TestBadGolden compares the text report of each bad manifest with its
// golden file (testdata/bad/NAME.golden). UPDATE_GOLDEN=1 rewrites them.
func TestBadGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) < 6 {
		t.Fatalf("bad files: %v", files)
	}
	c := newChecker(t, testPolicy())
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			rep := checkFile(t, c, f)
			if len(rep.AtOrAbove(SeverityMajor)) == 0 {
				t.Errorf("a bad manifest passes the default gate")
			}
			compareGolden(t, strings.TrimSuffix(f, ".yaml")+".golden", rep.Text(SeverityMajor))
		})
	}
}

// TestCodeQualityGolden pins the code quality report of the helm output.
func TestCodeQualityGolden(t *testing.T) {
	rep := checkFile(t, newChecker(t, testPolicy()), "testdata/bad/helm-template.yaml")
	out, err := rep.CodeQuality()
	if err != nil {
		t.Fatal(err)
	}
	compareGolden(t, "testdata/codequality.golden.json", out)
}

// TestCodeQualitySchema checks the code quality report of every testdata
// manifest, good and bad, against GitLab's documented report format: GitLab
// drops an entry it cannot read without a word.
func TestCodeQualitySchema(t *testing.T) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	if len(files) < 10 {
		t.Fatalf("testdata manifests: %v", files)
	}
	c := newChecker(t, testPolicy())
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			out, err := checkFile(t, c, f).CodeQuality()
			if err != nil {
				t.Fatal(err)
			}
			if err := reportschema.Validate(reportschema.CodeQuality, out); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// Findings with odd file names and lines still make a valid report: the
// path is repository-relative, the line at least 1.
func TestCodeQualityOddFindings(t *testing.T) {
	for file, want := range map[string]string{
		"":                   "-",
		".":                  "-",
		"./k8s/app.yaml":     "k8s/app.yaml",
		".//k8s//app.yaml":   "k8s/app.yaml",
		"/builds/g/p/a.yaml": "builds/g/p/a.yaml",
		"../other/a.yaml":    "../other/a.yaml",
		"/":                  "-",
	} {
		rep := Report{Findings: []Finding{{File: file, Line: -3, Kind: "Pod", Name: "p", Rule: "probes", Severity: SeverityMajor, Message: "m"}}}
		out, err := rep.CodeQuality()
		if err != nil {
			t.Fatal(err)
		}
		if err := reportschema.Validate(reportschema.CodeQuality, out); err != nil {
			t.Errorf("file %q: %v\n%s", file, err, out)
		}
		if !bytes.Contains(out, []byte(`"path": "`+want+`"`)) {
			t.Errorf("file %q: path is not %q:\n%s", file, want, out)
		}
	}
}

func compareGolden(t *testing.T, golden string, got []byte) {
	t.Helper()
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (UPDATE_GOLDEN=1 writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (UPDATE_GOLDEN=1 rewrites it)\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}
