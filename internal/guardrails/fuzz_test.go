package guardrails

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/lotse/lotse/test/reportschema"
)

// FuzzCheck checks that Check never panics, that it is deterministic, that
// findings point into the input and that every report renders (the code
// quality report valid against GitLab's format).
func FuzzCheck(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(baseDeployment))
	f.Add([]byte("&x {kind: List, items: [*x]}\n"))
	f.Add([]byte("kind: Pod\nspec: &s {containers: &c [*c, {<<: *s}]}\n"))
	c, err := NewChecker(Policy{AllowedRegistries: []string{"harbor.example.com"}, Rules: map[string]RulePolicy{RuleProbes: {Severity: SeverityMinor}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := c.Check("in.yaml", data)
		again, err2 := c.Check("in.yaml", data)
		if (err == nil) != (err2 == nil) || !reflect.DeepEqual(rep, again) {
			t.Fatalf("not deterministic: %v / %v", err, err2)
		}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.File != "in.yaml" {
				t.Fatalf("err = %#v", err)
			}
			return
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, f := range rep.Findings {
			if f.Line < 1 || f.Line > lines || f.Doc < 1 || f.Severity < SeverityInfo || f.Severity > SeverityBlocker || f.Message == "" {
				t.Fatalf("bad finding (input has %d lines): %+v", lines, f)
			}
			if _, ok := RuleByID(f.Rule); !ok {
				t.Fatalf("unknown rule %q", f.Rule)
			}
		}
		cq, err := rep.CodeQuality()
		if err != nil {
			t.Fatal(err)
		}
		// Whatever the manifests, GitLab can read the report.
		if err := reportschema.Validate(reportschema.CodeQuality, cq); err != nil {
			t.Fatalf("%v\n%s", err, cq)
		}
		if _, err := rep.JSON(); err != nil {
			t.Fatal(err)
		}
		_ = rep.Text(SeverityMajor)
	})
}
