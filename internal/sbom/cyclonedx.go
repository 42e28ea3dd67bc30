package sbom

import (
	"io"
	"reflect"
	_ "unsafe" // go:linkname

	"github.com/CycloneDX/cyclonedx-go"
	"github.com/anchore/syft/syft/format/common/cyclonedxhelpers"
)

// cycloneDXModel is syft's CycloneDX model of the SBOM, with lotse's
// property (see installedBy) and tools added.
func (s *SBOM) cycloneDXModel() *cyclonedx.BOM {
	bom := cyclonedxhelpers.ToFormatModel(*s.s)
	addInstalledBy(bom, s.s, s.installed)
	creditTools(bom, s.s.Descriptor)
	return bom
}

// encodeCycloneDX writes bom as syft's CycloneDX JSON encoder does
// (cyclonedx-go's EncodeVersion at cyclonedxSpec, neither indented nor
// HTML-escaped), converting bom itself rather than a copy of it.
//
// EncodeVersion converts a deep copy, made through encoding/gob, so that
// the caller's BOM is left as it was: on debian-files, 0.08 s of the 0.2 s
// the encoding takes, at the end of a release, when nothing else runs. bom
// is made for this one encoding, and nothing reads it after. A gob copy
// is not the value itself, so bom is first made what the copy would be
// (see gobRoundTrip). TestCycloneDXEncodingIsEncodeVersions compares the
// two encodings' bytes on every fixture image.
func encodeCycloneDX(w io.Writer, bom *cyclonedx.BOM) error {
	gobRoundTrip(reflect.ValueOf(bom).Elem())
	cycloneDXConvert(bom, cyclonedxSpec)
	return newCycloneDXEncoder(w).Encode(bom)
}

// newCycloneDXEncoder is the JSON encoder syft's CycloneDX format uses:
// neither indented nor HTML-escaped.
func newCycloneDXEncoder(w io.Writer) cyclonedx.BOMEncoder {
	e := cyclonedx.NewBOMEncoder(w, cyclonedx.BOMFileFormatJSON)
	e.SetPretty(false)
	e.SetEscapeHTML(false)
	return e
}

// cycloneDXConvert is cyclonedx-go's (*BOM).convert, which EncodeVersion
// applies to its copy: it drops what specVersion does not have and sets
// the spec version and schema. The linker does not check the signature:
// on an upgrade of cyclonedx-go, TestCycloneDXEncodingIsEncodeVersions
// tells whether it still holds.
//
//go:linkname cycloneDXConvert github.com/CycloneDX/cyclonedx-go.(*BOM).convert
func cycloneDXConvert(b *cyclonedx.BOM, specVersion cyclonedx.SpecVersion)

// gobRoundTrip makes the struct v what encoding/gob's copy of it is. gob
// sends a struct field only when it holds something: an empty slice or
// map, or a pointer to a zero number, false or "" or to an empty slice or
// map, comes back nil; a pointer to a struct comes back, its fields
// treated alike. Elements of slices are all sent, so they are kept, and
// their fields treated alike.
func gobRoundTrip(v reflect.Value) {
	for i := range v.NumField() {
		if v.Type().Field(i).IsExported() {
			gobField(v.Field(i))
		}
	}
}

func gobField(f reflect.Value) {
	switch f.Kind() {
	case reflect.Slice, reflect.Map:
		if f.Len() == 0 {
			f.SetZero()
			return
		}
		gobElements(f)
	case reflect.Pointer:
		if f.IsNil() {
			return
		}
		e := f.Elem()
		switch e.Kind() {
		case reflect.Struct:
			gobRoundTrip(e)
		case reflect.Slice, reflect.Map:
			if e.Len() == 0 {
				f.SetZero()
				return
			}
			gobElements(e)
		default:
			if e.IsZero() {
				f.SetZero()
			}
		}
	case reflect.Struct:
		gobRoundTrip(f)
	}
}

// gobElements treats the fields of the struct elements of a slice (or
// what its pointer elements point to).
func gobElements(s reflect.Value) {
	if s.Kind() != reflect.Slice {
		return
	}
	for i := range s.Len() {
		e := s.Index(i)
		if e.Kind() == reflect.Pointer && !e.IsNil() {
			e = e.Elem()
		}
		if e.Kind() == reflect.Struct {
			gobRoundTrip(e)
		}
	}
}
