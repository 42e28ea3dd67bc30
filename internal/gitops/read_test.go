package gitops

import (
	"strings"
	"testing"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestGetValue(t *testing.T) {
	for _, tc := range []struct {
		name, doc, path string
		want            string
		found           bool
		err             string
	}{
		{name: "plain", doc: "image:\n  tag: v1 # c\n", path: "image.tag", want: "v1", found: true},
		{name: "quoted", doc: "image: {tag: \"1.10\"}\n", path: "image.tag", want: "1.10", found: true},
		{name: "missing", doc: "image:\n  repository: x\n", path: "image.tag"},
		{name: "null", doc: "image:\n  tag:\n", path: "image.tag"},
		{name: "empty doc", doc: "", path: "image.tag"},
		{name: "list", doc: "c:\n  - image: a\n  - image: b\n", path: "c[1].image", want: "b", found: true},
		{name: "alias", doc: "x: &t v9\nimage:\n  tag: *t\n", path: "image.tag", want: "v9", found: true},
		{name: "merge key", doc: "base: &b {tag: v3}\nimage:\n  <<: *b\n", path: "image.tag", want: "v3", found: true},
		{name: "helm key", doc: "apps:\n  1.0: {tag: v4}\n", path: "apps.1.tag", want: "v4", found: true},
		{name: "second document", doc: "a: 1\n---\nimage:\n  tag: v2\n", path: "image.tag", want: "v2", found: true},
		{name: "two documents", doc: "image: {tag: a}\n---\nimage: {tag: b}\n", path: "image.tag", err: "more than one document"},
		{name: "not scalar", doc: "image:\n  tag: [1]\n", path: "image.tag", err: "a list, not a single value"},
		{name: "bad yaml", doc: "image: [\n", path: "image.tag", err: "not valid YAML"},
		{name: "bad path", doc: "a: 1\n", path: "a..b", err: "empty key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, found, err := GetValue([]byte(tc.doc), tc.path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want || found != tc.found {
				t.Fatalf("got %q %v %v, want %q %v", got, found, err, tc.want, tc.found)
			}
		})
	}
}

func TestCurrentImage(t *testing.T) {
	shop := &App{Name: "shop", Image: "harbor.example.com/team/shop"}
	for _, tc := range []struct {
		name string
		set  []Target
		doc  string
		want string // ImageRef.String(); "" means not deployed
		err  string
	}{
		{name: "repository and digest",
			set:  []Target{{"image.repository", PartRepository}, {"image.digest", PartDigest}},
			doc:  "image:\n  repository: harbor.example.com/team/shop\n  digest: " + digestA + "\n",
			want: "harbor.example.com/team/shop@" + digestA},
		{name: "tag and digest",
			set:  []Target{{"image.tag", PartTag}, {"image.digest", PartDigest}},
			doc:  "image: {tag: \"1.2\", digest: " + digestB + "}\n",
			want: "harbor.example.com/team/shop:1.2@" + digestB},
		{name: "tag only", set: []Target{{"image.tag", PartTag}}, doc: "image: {tag: v7}\n",
			want: "harbor.example.com/team/shop:v7"},
		{name: "reference", set: []Target{{"image", PartReference}},
			doc: "image: harbor.example.com/team/shop@" + digestA + "\n", want: "harbor.example.com/team/shop@" + digestA},
		{name: "shared file", set: []Target{{"apps.{app}.digest", PartDigest}},
			doc: "apps:\n  cart: {digest: " + digestB + "}\n  shop: {digest: " + digestA + "}\n", want: "harbor.example.com/team/shop@" + digestA},
		{name: "not deployed", set: []Target{{"image.digest", PartDigest}}, doc: "replicas: 1\n"},
		{name: "bad digest", set: []Target{{"image.digest", PartDigest}}, doc: "image: {digest: latest}\n", err: `holds "latest", not a digest`},
		{name: "other repository", set: []Target{{"image.repository", PartRepository}, {"image.digest", PartDigest}},
			doc: "image: {repository: docker.io/library/nginx, digest: " + digestA + "}\n", err: "not at the app's image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := *shop
			a.Set = tc.set
			ref, ok, err := a.CurrentImage([]byte(tc.doc))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if ok {
				got = ref.String()
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSetPathApp checks that {app} in set paths is replaced, so apps share
// one values file, and that two apps writing the same path still conflict.
func TestSetPathApp(t *testing.T) {
	cfg, err := ParseConfig([]byte(sharedConfig("apps.{app}.digest")), "lotse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := ParseImageRef("harbor.example.com/team/shop@" + digestA)
	shop, _ := cfg.App("shop")
	edits, err := shop.Edits(ref)
	if err != nil || len(edits) != 1 || edits[0].Path != "apps.shop.digest" {
		t.Fatalf("edits %v %v", edits, err)
	}
	out, _, err := SetValues([]byte("apps:\n  cart:\n    digest: "+digestB+"\n"), edits)
	if err != nil {
		t.Fatal(err)
	}
	if want := "apps:\n  cart:\n    digest: " + digestB + "\n  shop:\n    digest: " + digestA + "\n"; string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}

	for path, want := range map[string]string{
		"apps.digest":         `apps "cart" and "shop" both set apps.digest in envs/dev/values.yaml for stage "dev"`,
		"apps.{name}.digest":  `unknown placeholder {name}`,
		`apps."{app}".digest`: "",
	} {
		_, err := ParseConfig([]byte(sharedConfig(path)), "lotse.yaml")
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", path, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", path, err, want)
		}
	}
}

func sharedConfig(setPath string) string {
	var b strings.Builder
	b.WriteString("version: 1\ngitlab: {project: platform/gitops}\nstages: [{name: dev, promotion: commit}]\napps:\n")
	for _, n := range []string{"cart", "shop"} {
		b.WriteString("  - name: " + n + "\n    sourceProject: team/" + n + "\n    image: harbor.example.com/team/" + n +
			"\n    values: envs/{stage}/values.yaml\n    set: {'" + setPath + "': digest}\n")
	}
	return b.String()
}

// FuzzCurrentImage checks that whatever a bump writes into a values file
// reads back as the image it wrote, and that the other apps' values in a
// shared file do not change.
func FuzzCurrentImage(f *testing.F) {
	f.Add("apps:\n  cart: {digest: "+digestB+"}\n", "v1", true)
	f.Add("# empty\n", "1.10", false)
	f.Add("apps: &a\n  shop:\n    tag: 'x'\n", "true", true)
	f.Add("---\napps:\n  shop: {}\n...\n", "0x1F", false)
	cart := &App{Name: "cart", Image: "harbor.example.com/team/cart", Set: []Target{{"apps.{app}.digest", PartDigest}}}
	shop := &App{Name: "shop", Image: "harbor.example.com/team/shop",
		Set: []Target{{"apps.{app}.tag", PartTag}, {"apps.{app}.digest", PartDigest}}}
	f.Fuzz(func(t *testing.T, doc, tag string, useA bool) {
		if !tagRE.MatchString(tag) {
			return
		}
		d := digestB
		if useA {
			d = digestA
		}
		ref := ImageRef{Repository: shop.Image, Tag: tag, Digest: d}
		edits, err := shop.Edits(ref)
		if err != nil {
			t.Fatal(err)
		}
		cartBefore, cartOK, cartErr := cart.CurrentImage([]byte(doc))
		out, _, err := SetValues([]byte(doc), edits)
		if err != nil {
			return // refused edits are fine; wrong ones are not
		}
		got, ok, err := shop.CurrentImage(out)
		if err != nil || !ok || got != ref {
			t.Fatalf("wrote %s into %q, read back %s %v %v from %q", ref, doc, got, ok, err, out)
		}
		if cartErr == nil {
			after, afterOK, err := cart.CurrentImage(out)
			if err != nil || after != cartBefore || afterOK != cartOK {
				t.Fatalf("the bump of shop changed cart: %v %v -> %v %v %v", cartBefore, cartOK, after, afterOK, err)
			}
		}
	})
}
