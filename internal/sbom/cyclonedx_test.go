package sbom

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/CycloneDX/cyclonedx-go"

	"github.com/lotse/lotse/internal/layercache"
	"github.com/lotse/lotse/test/fixture"
)

// Converting the BOM itself gives the bytes EncodeVersion gives from its
// gob copy, on every fixture image (also a Go binary's, an RPM distribution's
// and one whose executable has no package), cataloged whole and by layer,
// and on an SBOM with no packages.
func TestCycloneDXEncodingIsEncodeVersions(t *testing.T) {
	elf, err := fixture.UnknownELF()
	if err != nil {
		t.Fatal(err)
	}
	goImg, err := fixture.GoImage(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rocky, err := fixture.RockyImage()
	if err != nil {
		t.Fatal(err)
	}
	images := append(fixtureImages(t),
		namedImage{"an executable without a package", layeredImage(t, "12", fixture.File{Path: "usr/local/bin/tool", Mode: 0o755, Data: elf})},
		namedImage{"a Go binary", goImg}, namedImage{"rocky", rocky})
	lc, err := layercache.Open(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var (
		sboms []*SBOM
		names []string
	)
	for _, tc := range images {
		sboms = append(sboms, catalog(t, tc.img, nil), catalog(t, tc.img, lc))
		names = append(names, tc.name+", whole", tc.name+", by layer")
	}
	motd, err := fixture.Layer(fixture.File{Path: "etc/motd", Data: []byte("hello\n")})
	if err != nil {
		t.Fatal(err)
	}
	empty, err := fixture.Image(motd)
	if err != nil {
		t.Fatal(err)
	}
	sboms = append(sboms, catalog(t, empty, nil))
	names = append(names, "no packages")
	for i, s := range sboms {
		bom := s.cycloneDXModel()
		var want, got bytes.Buffer
		if err := newCycloneDXEncoder(&want).EncodeVersion(bom, cyclonedxSpec); err != nil { // leaves bom as it was
			t.Fatal(err)
		}
		if err := encodeCycloneDX(&got, bom); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("%s: converted in place:\n%s", names[i], firstDifference(got.String(), want.String()))
		}
		if !bytes.Contains(got.Bytes(), []byte(`"specVersion":"1.6"`)) {
			t.Errorf("%s: not CycloneDX 1.6: %.200s", names[i], got.Bytes())
		}
	}
}

// gobRoundTrip makes a BOM what encoding/gob's copy of it is (what
// cyclonedx-go's EncodeVersion encodes), on BOMs filled at random: each
// pointer nil, to a zero value or to a filled one; each slice nil, empty
// or filled; each number, bool and string zero or not.
func TestGobRoundTripIsGobsCopy(t *testing.T) {
	for seed := range uint64(300) {
		// The same seed fills two BOMs alike: one is copied through gob,
		// the other made what the copy should be.
		var a, b cyclonedx.BOM
		fillRandom(reflect.ValueOf(&a).Elem(), rand.New(rand.NewPCG(seed, 1)), 0)
		fillRandom(reflect.ValueOf(&b).Elem(), rand.New(rand.NewPCG(seed, 1)), 0)
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(a); err != nil {
			t.Fatal(err)
		}
		var copied cyclonedx.BOM
		if err := gob.NewDecoder(&buf).Decode(&copied); err != nil {
			t.Fatal(err)
		}
		gobRoundTrip(reflect.ValueOf(&b).Elem())
		if !reflect.DeepEqual(b, copied) {
			wantJSON, _ := json.Marshal(copied)
			gotJSON, _ := json.Marshal(b)
			t.Fatalf("seed %d:\n%s", seed, firstDifference(string(gotJSON), string(wantJSON)))
		}
	}
}

// fillRandom fills v, its pointers and slices depth levels deep at most.
func fillRandom(v reflect.Value, r *rand.Rand, depth int) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillRandom(v.Field(i), r, depth)
			}
		}
	case reflect.Pointer:
		if depth > 3 || r.IntN(3) == 0 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		if r.IntN(3) > 0 {
			fillRandom(v.Elem(), r, depth+1)
		}
	case reflect.Slice:
		switch n := r.IntN(4); {
		case depth > 3 || n == 0:
		case n == 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			s := reflect.MakeSlice(v.Type(), n-1, n-1)
			for i := range n - 1 {
				e := s.Index(i)
				if e.Kind() == reflect.Pointer { // gob refuses nil elements
					e.Set(reflect.New(e.Type().Elem()))
					e = e.Elem()
				}
				fillRandom(e, r, depth+1)
			}
			v.Set(s)
		}
	case reflect.String:
		if r.IntN(2) == 0 {
			v.SetString("x")
		}
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(r.IntN(2)))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(r.IntN(2)))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(r.IntN(2)) * 1.5)
	}
}
