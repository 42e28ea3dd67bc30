package gitops

import (
	"slices"
	"strings"
	"testing"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseImageRef(t *testing.T) {
	tests := []struct {
		in      string
		want    ImageRef
		wantErr string
	}{
		{in: "harbor.example.com/team/shop@" + testDigest, want: ImageRef{"harbor.example.com/team/shop", "", testDigest}},
		{in: "harbor.example.com/team/shop:1.4.2@" + testDigest, want: ImageRef{"harbor.example.com/team/shop", "1.4.2", testDigest}},
		{in: "localhost:5000/shop:v1@" + testDigest, want: ImageRef{"localhost:5000/shop", "v1", testDigest}},
		{in: "localhost:5000/shop@" + testDigest, want: ImageRef{"localhost:5000/shop", "", testDigest}},
		{in: "shop@" + testDigest, want: ImageRef{"shop", "", testDigest}},
		{in: "harbor.example.com/team/shop@sha256:12", wantErr: `bad digest "sha256:12": want sha256: and 64 hex characters`},
		{in: "harbor.example.com/team/shop@" + strings.ToUpper(testDigest), wantErr: "bad digest"},
		{in: "harbor.example.com/team/shop@sha512:" + strings.Repeat("ab", 64), wantErr: "bad digest"},
		{in: "harbor.example.com/team/shop:1.0", wantErr: `image reference "harbor.example.com/team/shop:1.0" has no digest`},
		{in: "harbor.example.com/team/shop:-x@" + testDigest, wantErr: `bad tag "-x"`},
		{in: "harbor.example.com/Team/shop@" + testDigest, wantErr: `bad image repository "harbor.example.com/Team/shop"`},
		{in: "@" + testDigest, wantErr: "bad image repository"},
	}
	for _, tt := range tests {
		got, err := ParseImageRef(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseImageRef(%q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseImageRef(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}

func TestImageRefPart(t *testing.T) {
	ref := ImageRef{"harbor.example.com/team/shop", "1.4.2", testDigest}
	want := map[Part]string{
		PartRepository: "harbor.example.com/team/shop",
		PartTag:        "1.4.2",
		PartDigest:     testDigest,
		PartReference:  "harbor.example.com/team/shop@" + testDigest,
	}
	for _, p := range Parts {
		if got, err := ref.Part(p); err != nil || got != want[p] {
			t.Errorf("Part(%s) = %q, %v", p, got, err)
		}
	}
	ref.Tag = ""
	if _, err := ref.Part(PartTag); err == nil || !strings.Contains(err.Error(), "has no tag") {
		t.Errorf("Part(tag) without tag: err = %v", err)
	}
	if _, err := ref.Part("name"); err == nil {
		t.Error("Part(name) succeeded")
	}
}

func TestAppEdits(t *testing.T) {
	app := &App{
		Name:  "shop",
		Image: "harbor.example.com/team/shop",
		Set: []Target{
			{"image.repository", PartRepository},
			{"image.tag", PartTag},
			{"image.digest", PartDigest},
		},
	}
	ref := ImageRef{"harbor.example.com/team/shop", "1.4.2", testDigest}
	got, err := app.Edits(ref)
	want := []Edit{
		{"image.repository", "harbor.example.com/team/shop"},
		{"image.tag", "1.4.2"},
		{"image.digest", testDigest},
	}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Edits = %v, %v", got, err)
	}

	ref.Tag = ""
	_, err = app.Edits(ref)
	if err == nil || err.Error() != `app "shop" sets image.tag to the tag: image reference harbor.example.com/team/shop@`+testDigest+` has no tag` {
		t.Errorf("Edits without tag: err = %v", err)
	}

	other := ImageRef{"harbor.example.com/team/other", "1", testDigest}
	if _, err := app.Edits(other); err == nil || !strings.Contains(err.Error(), "is not from the app's repository") {
		t.Errorf("Edits of another repository: err = %v", err)
	}
}

func TestEditsApplyToValues(t *testing.T) {
	app := &App{Name: "shop", Image: "harbor.example.com/team/shop", Set: []Target{{"image.tag", PartTag}, {"image.digest", PartDigest}}}
	edits, err := app.Edits(ImageRef{"harbor.example.com/team/shop", "1.10", testDigest})
	if err != nil {
		t.Fatal(err)
	}
	in := "image:\n  repository: harbor.example.com/team/shop # where\n  tag: 1.9\n"
	out, changed, err := SetValues([]byte(in), edits)
	want := "image:\n  repository: harbor.example.com/team/shop # where\n  tag: \"1.10\"\n  digest: " + testDigest + "\n"
	if err != nil || !changed || string(out) != want {
		t.Errorf("got %q, %v, %v\nwant %q", out, changed, err, want)
	}
}

func FuzzParseImageRef(f *testing.F) {
	for _, s := range []string{
		"harbor.example.com/team/shop:1.4.2@" + testDigest,
		"localhost:5000/a@" + testDigest,
		"a@sha256:12",
		"a:b:c@" + testDigest,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseImageRef(s)
		if err != nil {
			return
		}
		if ref.String() != s {
			t.Fatalf("String() = %q, want %q", ref.String(), s)
		}
		if checkRepository(ref.Repository) != nil {
			t.Fatalf("accepted repository %q", ref.Repository)
		}
	})
}
