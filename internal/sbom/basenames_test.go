package sbom

import (
	"slices"
	"strings"
	"testing"

	"github.com/anchore/stereoscope/pkg/file"
	"github.com/anchore/stereoscope/pkg/filetree"
)

// basenameFiles are paths whose basenames share prefixes, runes of
// several bytes, an invalid byte, the replacement rune and the root.
var basenameFiles = []string{
	"/", "/var/lib/dpkg/info/libc6.md5sums", "/var/lib/dpkg/info/libc6.list",
	"/var/lib/dpkg/info/libc6:amd64.list", "/var/lib/dpkg/info/libc6-dev.list",
	"/var/lib/dpkg/info/libc.list", "/usr/share/doc/libc6/copyright", "/libc6",
	"/var/lib/dpkg/info/libc6.md5sums.bak", "/opt/libc6.", "/x/ümlaut.txt", "/x/ü.txt",
	"/x/u\xff.txt", "/x/u\uFFFD.txt", "/x/\xff", "/x/[a].txt", "/x/a?b", "/x/a*b",
	"/usr/lib/python3/dist-packages/python3.11", "/usr/bin/python3",
}

func basenameTestIndex(t testing.TB, paths []string) filetree.Index {
	t.Helper()
	idx := filetree.NewIndex()
	for _, p := range paths {
		ty := file.AllTypes()[len(p)%len(file.AllTypes())] // every type is listed
		idx.Add(*file.NewFileReference(file.Path(p)), file.Metadata{Path: p, Type: ty})
	}
	return idx
}

// sameEntries compares two lookups as sets of file IDs (the index's own
// order is its map's).
func sameEntries(t testing.TB, glob string, got, want []filetree.IndexEntry, gotErr, wantErr error) {
	t.Helper()
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("%q: error %v, the index's %v", glob, gotErr, wantErr)
	}
	ids := func(es []filetree.IndexEntry) []file.ID {
		out := make([]file.ID, len(es))
		for i, e := range es {
			out[i] = e.ID()
		}
		slices.Sort(out)
		return out
	}
	if g, w := ids(got), ids(want); !slices.Equal(g, w) {
		t.Fatalf("%q: %d entries %v, the index's %d %v", glob, len(g), g, len(w), w)
	}
}

func TestBasenameIndexIsTheIndex(t *testing.T) {
	idx := basenameTestIndex(t, basenameFiles)
	fast := newBasenameIndex(idx)
	for _, globs := range [][]string{
		{"libc6.*"}, {"libc6*"}, {"libc6?*"}, {"libc6.md5sums"}, {"libc?.list"},
		{"libc6.*", "libc.*"}, {"libc6.*", "libc6.*"}, {"ü*"}, {"ümlaut.*"},
		{"u\xff*"}, {"u\uFFFD*"}, {"\xff*"}, {"[a]*"}, {"a?b"}, {"a*b"}, {"a*"},
		{"python3*"}, {"python3.*"}, {"*.list"}, {"*"}, {"?ibc6.*"},
		{"nothing.*"}, {"zzz*"}, {""}, {"libc6/*"}, {"**/libc6.*"}, {"libc6.*", "**"},
	} {
		got, gotErr := fast.GetByBasenameGlob(globs...)
		want, wantErr := idx.GetByBasenameGlob(globs...)
		sameEntries(t, strings.Join(globs, " "), got, want, gotErr, wantErr)
	}
	// The answers above came from the list, not from a fall-back to the
	// index.
	if n := len(fast.names); fast.err != nil || n != len(basenameFiles) {
		t.Errorf("listed %d basenames (%v), want the %d distinct ones", n, fast.err, len(basenameFiles))
	}
}

func TestGlobPrefix(t *testing.T) {
	for glob, want := range map[string]string{
		"libc6.*": "libc6.", "libc?.list": "libc", "ü*": "ü", "a*b?": "a",
		"*.list": "", "?x": "", "plain": "", "**": "", "a/b*": "", "a**": "",
		"u\xff*": "", "u\uFFFD*": "",
	} {
		got, ok := globPrefix(glob)
		if got != want || ok != (want != "") {
			t.Errorf("globPrefix(%q) = %q, %v; want %q", glob, got, ok, want)
		}
	}
}

// FuzzBasenameIndex: for any basenames and glob, the index answers as
// stereoscope's does.
func FuzzBasenameIndex(f *testing.F) {
	f.Add("libc6.md5sums\nlibc6.list\nlibc6-dev.list\nlibc.list", "libc6.*")
	f.Add("ab\naab\nabab\nb", "a*b")
	f.Add("ümlaut\nu\xff\nx", "u*")
	f.Add("a\nab\nabc", "ab?")
	f.Fuzz(func(t *testing.T, names, glob string) {
		var paths []string
		for n := range strings.SplitSeq(names, "\n") {
			if n != "" && !strings.Contains(n, "/") {
				paths = append(paths, "/d/"+n)
			}
		}
		idx := basenameTestIndex(t, paths)
		got, gotErr := newBasenameIndex(idx).GetByBasenameGlob(glob)
		want, wantErr := idx.GetByBasenameGlob(glob)
		sameEntries(t, glob, got, want, gotErr, wantErr)
	})
}
