package gitops

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the out.yaml of the golden files in testdata/golden")

// TestGolden runs the edits listed as "set path=value" lines in the comment
// of each testdata/golden/*.txtar (a value in double quotes is unquoted as a
// Go string) on in.yaml and compares the result with out.yaml.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/golden/*.txtar")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var edits []Edit
			for _, line := range strings.Split(string(ar.Comment), "\n") {
				spec, ok := strings.CutPrefix(line, "set ")
				if !ok {
					continue
				}
				path, value, _ := strings.Cut(spec, "=")
				if strings.HasPrefix(value, `"`) {
					if value, err = strconv.Unquote(value); err != nil {
						t.Fatalf("%s: %v", line, err)
					}
				}
				edits = append(edits, Edit{Path: path, Value: value})
			}
			files := map[string]int{}
			for i, f := range ar.Files {
				files[f.Name] = i
			}
			in := ar.Files[files["in.yaml"]].Data
			got, changed, err := SetValues(in, edits)
			if err != nil {
				t.Fatal(err)
			}
			if !changed {
				t.Error("changed = false")
			}
			if *update {
				ar.Files[files["out.yaml"]].Data = got
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want := ar.Files[files["out.yaml"]].Data; !bytes.Equal(got, want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
			// Every edit on its own is a no-op on the result.
			for _, e := range edits {
				again, changed, err := SetValues(got, []Edit{e})
				if err != nil || changed || !bytes.Equal(again, got) {
					t.Errorf("%s again: changed=%v err=%v", e.Path, changed, err)
				}
			}
		})
	}
}

func TestSetValues(t *testing.T) {
	tests := []struct {
		name, in  string
		path, val string
		want      string // "" with changed false: unchanged
		unchanged bool
	}{
		{name: "CRLF kept, also for added lines", in: "a: 1\r\nb:\r\n  c: 2\r\n", path: "b.d", val: "x", want: "a: 1\r\nb:\r\n  c: 2\r\n  d: x\r\n"},
		{name: "CRLF replace", in: "a: 1\r\nb: 2 # c\r\n", path: "b", val: "3", want: "a: 1\r\nb: \"3\" # c\r\n"},
		{name: "BOM kept", in: "\ufeffimage:\n  tag: v1\n", path: "image.tag", val: "v2", want: "\ufeffimage:\n  tag: v2\n"},
		{name: "BOM and empty", in: "\ufeff", path: "image.tag", val: "v2", want: "\ufeffimage:\n  tag: v2\n"},
		{name: "empty file", in: "", path: "image.tag", val: "x", want: "image:\n  tag: x\n"},
		{name: "only comments, no final newline", in: "# values", path: "image.tag", val: "x", want: "# values\nimage:\n  tag: x\n"},
		{name: "empty document after marker", in: "---\n# c\n", path: "a", val: "x", want: "---\n# c\na: x\n"},
		{name: "no final newline", in: "a:\n  b: 1", path: "a.c", val: "2", want: "a:\n  b: 1\n  c: \"2\""},
		{name: "no-op", in: "image:\n  tag: \"1.0\" # c\n", path: "image.tag", val: "1.0", unchanged: true},
		{name: "no-op on block scalar", in: "a: |-\n  x\n", path: "a", val: "x", unchanged: true},
		{name: "number becomes string", in: "a: 1.0\n", path: "a", val: "1.0", want: "a: \"1.0\"\n"},
		{name: "empty value", in: "a:\n  tag:\n  x: 1\n", path: "a.tag", val: "v1", want: "a:\n  tag: v1\n  x: 1\n"},
		{name: "empty value with comment", in: "a:\n  tag: # c\n", path: "a.tag", val: "v1", want: "a:\n  tag: v1 # c\n"},
		{name: "empty string", in: "a: x\n", path: "a", val: "", want: "a: \"\"\n"},
		{name: "keep chomping block scalar", in: "a: |+\n  hi\n\n\nb: 1\n", path: "a", val: "x", want: "a: x\nb: 1\n"},
		{name: "multi-line plain", in: "a: multi\n  line\n\n   plain\nb: 1\n", path: "a", val: "x", want: "a: x\nb: 1\n"},
		{name: "multi-line double quoted", in: "a: \"multi\n  line\" # c\nb: 1\n", path: "a", val: "x", want: "a: \"x\" # c\nb: 1\n"},
		{name: "quoted key", in: "ingress:\n  annotations:\n    a.b/c: x\n", path: `ingress.annotations."a.b/c"`, val: "y", want: "ingress:\n  annotations:\n    a.b/c: \"y\"\n"},
		{name: "new key needing quotes", in: "a: 1\n", path: `"b: c"`, val: "#x", want: "a: 1\n\"b: c\": \"#x\"\n"},
		{name: "list index", in: "l:\n- {name: a, image: x}\n", path: "l[0].image", val: "y,z", want: "l:\n- {name: a, image: \"y,z\"}\n"},
		{name: "sequence in flow", in: "l: [a, b]\n", path: "l[1]", val: "c", want: "l: [a, c]\n"},
		{name: "key 00 is Helm's \"0\"", in: "m:\n  00: a\n", path: "m.0", val: "b", want: "m:\n  00: b\n"},
		{name: "merged scalar is overridden", in: "d: &d {tag: 1}\ni:\n  <<: *d\n", path: "i.tag", val: "2", want: "d: &d {tag: 1}\ni:\n  <<: *d\n  tag: \"2\"\n"},
		{name: "anchored mapping gets the key", in: "d: &d\n  a: 1\ne: *d\n", path: "d.b", val: "2", want: "d: &d\n  a: 1\n  b: \"2\"\ne: *d\n"},
		{name: "tab after value", in: "a: 1\t# c\n", path: "a", val: "2", want: "a: \"2\"\t# c\n"},
		{name: "unicode columns", in: "ä: {ö: 1, ü: 2}\n", path: "ä.ü", val: "ß", want: "ä: {ö: 1, ü: ß}\n"},
		{name: "line separator is a line break", in: "a: 1\u2028b: 2\n", path: "b", val: "3", want: "a: 1\u2028b: \"3\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed, err := SetValues([]byte(tt.in), []Edit{{Path: tt.path, Value: tt.val}})
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if tt.unchanged {
				want = tt.in
			}
			if changed == tt.unchanged || string(got) != want {
				t.Errorf("got %q (changed %v)\nwant %q", got, changed, want)
			}
		})
	}
}

func TestSetValuesErrors(t *testing.T) {
	tests := []struct {
		name, in  string
		path, val string
		want      string
	}{
		{name: "not YAML", in: "a: [1\n", path: "a", want: "set a: not valid YAML: yaml: line 1: did not find expected ',' or ']'"},
		{name: "duplicate key", in: "a: 1\na: 2\n", path: "a", want: `set a: not valid YAML: yaml: unmarshal errors:`},
		{name: "through a string", in: "image: \"x\"\n", path: "image.tag", want: `set image.tag: "image" is a string, not a mapping (line 1)`},
		{name: "through a list", in: "image: [1]\n", path: "image.tag", want: `set image.tag: "image" is a list, not a mapping (line 1)`},
		{name: "through explicit null", in: "image: ~\n", path: "image.tag", want: `set image.tag: "image" is null, not a mapping (line 1)`},
		{name: "index into mapping", in: "image: {a: 1}\n", path: "image[0]", want: `set image[0]: "image" is a mapping, not a list (line 1)`},
		{name: "index out of range", in: "l: [a]\n", path: "l[3]", want: `set l[3]: "l" has 1 items, so there is no item 3, and lotse does not add list items`},
		{name: "create list items", in: "a: 1\n", path: "l[0]", want: `set l[0]: "l[0]" does not exist, and lotse does not add list items`},
		{name: "target is a mapping", in: "image: {a: 1}\n", path: "image", want: `set image: the value is a mapping, not a single value (line 1)`},
		{name: "through an alias", in: "d: &d {a: 1}\ne: *d\n", path: "e.a", want: `set e.a: "e" is an alias of &d (line 1) and the path goes through it; lotse does not edit through aliases, so set the anchored value or replace the alias with the value`},
		{name: "target is an alias", in: "d: &d 1\ne: *d\n", path: "e", want: `set e: "e" is an alias of &d (line 1) and the path ends at it`},
		{name: "hides a merged mapping", in: "d: &d {s: {a: 1}}\ni:\n  <<: *d\n", path: "i.s.b", want: `set i.s.b: "s" comes from the merge key at line 3 as a mapping; lotse does not add a key that would hide it`},
		{name: "explicit tag", in: "a: !!int 1\n", path: "a", want: "set a: the value has the explicit tag !!int (line 1); lotse writes strings only"},
		{name: "document is a list", in: "- a\n", path: "a", want: "set a: the document is a list, not a mapping (line 1)"},
		{name: "in two documents", in: "a: 1\n---\na: 2\n", path: "a", want: "set a: the path is in documents 1 and 2 (at least); lotse edits exactly one place"},
		{name: "in no document", in: "a: 1\n---\nb: 2\n", path: "c", want: `set c: the path is in none of the 2 documents, and lotse adds keys only to single-document files (document 1: "c" does not exist; document 2: "c" does not exist)`},
		{name: "Helm key clash", in: "m:\n  0: a\n  00: b\n", path: "m.0", want: `set m.0: key "0" is in the mapping twice as Helm reads keys (lines 2 and 3)`},
		{name: "bad path", in: "a: 1\n", path: "a..b", want: `set a..b: bad path "a..b": empty key at offset 2`},
		{name: "bad value", in: "a: 1\n", path: "a", val: "\xff", want: "set a: the value is not valid UTF-8"},
		{name: "UTF-16", in: "\xff\xfea\x00:\x00", path: "a", want: "set a: the file is UTF-16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, changed, err := SetValues([]byte(tt.in), []Edit{{Path: tt.path, Value: tt.val}})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("err = %v\nwant %s", err, tt.want)
			}
			if out != nil || changed {
				t.Errorf("out = %q, changed = %v with an error", out, changed)
			}
		})
	}
}

func TestParsePath(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "image.tag", want: "image.tag"},
		{in: `a."b.c".d`, want: `a."b.c".d`},
		{in: `"a\"b\\c"`, want: `"a\"b\\c"`},
		{in: `""`, want: `""`},
		{in: "l[0][12].x", want: "l[0][12].x"},
		{in: "", err: `bad path "": empty`},
		{in: "a.", err: `bad path "a.": ends with a dot`},
		{in: ".a", err: `bad path ".a": empty key at offset 0`},
		{in: "[0]", err: `bad path "[0]": empty key at offset 0`},
		{in: "a[01]", err: `bad path "a[01]": index "01" at offset 1 is not a non-negative integer`},
		{in: "a[-1]", err: `bad path "a[-1]": index "-1" at offset 1 is not a non-negative integer`},
		{in: "a[0", err: `bad path "a[0": unterminated index at offset 1`},
		{in: `"a`, err: `bad path "\"a": unterminated quoted key at offset 0`},
		{in: `"a\n"`, err: `bad path "\"a\\n\"": only \" and \\ may be escaped in a quoted key (offset 2)`},
		{in: `a"b"`, err: `bad path "a\"b\"": unexpected '"' at offset 1`},
		{in: "a\tb", err: `bad path "a\tb": key "a\tb" contains a control character`},
	}
	for _, tt := range tests {
		segs, err := parsePath(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("parsePath(%q) err = %v, want %s", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || formatPath(segs) != tt.want {
			t.Errorf("parsePath(%q) = %q, %v", tt.in, formatPath(segs), err)
		}
	}
}

func TestPlainSafe(t *testing.T) {
	for s, want := range map[string]bool{
		"v1.2.3": true, "1.2.3": true, "latest": true, "sha256:abc": true, "harbor.example.com/a/b": true,
		"1.10": false, "1": false, "0x1F": false, "0o17": false, "0777": false, "1_000": false, "1:20": false,
		"1e3": false, ".5": false, ".inf": false, ".NaN": false, "true": false, "yes": false, "Off": false,
		"y": false, "n": false, "~": false, "null": false, "2024-01-01": false, "": false, " a": false,
		"a: b": false, "a #b": false, "#a": false, "*a": false, "&a": false, "!a": false, "-a": false,
		"a:": false, "<<": false, "=": false, "a\nb": false, "a\tb": false, "@a": false, "`a": false,
	} {
		if got := plainSafe(s, false); got != want {
			t.Errorf("plainSafe(%q) = %v", s, got)
		}
	}
	if plainSafe("a,b", true) || plainSafe("a:b", true) || !plainSafe("a,b", false) {
		t.Error("flow context")
	}
}
