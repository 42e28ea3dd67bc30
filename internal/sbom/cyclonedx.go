package sbom

import (
	"bytes"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"io"

	"github.com/CycloneDX/cyclonedx-go"
)

// splitComponents is how many components a BOM needs before
// encodeCycloneDX encodes it in two halves at once.
const splitComponents = 2000

// encodeCycloneDX writes bom as cyclonedx-go's JSON encoder writes it for
// cyclonedxSpec (EncodeVersion: not indented, HTML not escaped), the
// components of a large BOM in two halves at once.
//
// EncodeVersion copies the whole BOM (through encoding/gob) to convert the
// copy to the version, then encodes it: 0.05 s of one core for the 11,800
// components of the bench's debian-files, at the end of a release, where
// the other core has little to do. Each component is converted on its own
// and encoded as an element of the components array, so each half,
// encoded by EncodeVersion as a BOM of its own, gives the same elements:
// they are spliced into the document of the BOM without its components, at
// the place encoding/json puts the components (BOM's fields in order).
// TestEncodeCycloneDXSplit compares the result with EncodeVersion's, byte
// for byte.
func encodeCycloneDX(w io.Writer, bom *cyclonedx.BOM) error {
	return encodeCycloneDXSplit(w, bom, splitComponents)
}

// encodeCycloneDXSplit is encodeCycloneDX for BOMs of at least split
// components.
func encodeCycloneDXSplit(w io.Writer, bom *cyclonedx.BOM, split int) error {
	if bom.Components == nil || len(*bom.Components) < max(split, 2) {
		return encodeBOM(w, bom)
	}
	all := *bom.Components
	halves := [2][]cyclonedx.Component{all[:len(all)/2], all[len(all)/2:]}
	var elements [2][]byte
	errs := make(chan error, 2)
	for i := range halves {
		go func() {
			part := cyclonedx.NewBOM()
			part.Components = &halves[i]
			var b bytes.Buffer
			err := encodeBOM(&b, part)
			if err == nil {
				elements[i], err = componentElements(b.Bytes())
			}
			errs <- err
		}()
	}
	rest := *bom
	rest.Components = nil
	var doc bytes.Buffer
	err := encodeBOM(&doc, &rest)
	for range halves {
		if e := <-errs; err == nil {
			err = e
		}
	}
	if err != nil {
		return err
	}
	at, err := componentsPlace(doc.Bytes())
	if err != nil {
		return err
	}
	d := doc.Bytes()
	for _, part := range [][]byte{d[:at], []byte(`,"components":[`), elements[0], {','}, elements[1], {']'}, d[at:]} {
		if _, err := w.Write(part); err != nil {
			return err
		}
	}
	return nil
}

// componentsHead is how cyclonedx-go starts the JSON document of a BOM
// made by cyclonedx.NewBOM with components only, up to its components'
// elements; componentsTail how it ends it.
var (
	componentsHead = []byte(`,"version":1,"components":[`)
	componentsTail = []byte("]}\n")
)

// componentElements returns the elements of the components array in doc,
// the encoding of a BOM with components only.
func componentElements(doc []byte) ([]byte, error) {
	i := bytes.Index(doc, componentsHead)
	if i < 0 || !bytes.HasSuffix(doc, componentsTail) {
		return nil, errors.New("encode CycloneDX: unexpected document of components")
	}
	return doc[i+len(componentsHead) : len(doc)-len(componentsTail)], nil
}

// componentsPlace returns where, in doc (the encoding of a BOM without
// components), encoding/json puts the components: after the value of the
// last of the fields that come before them in cyclonedx.BOM.
func componentsPlace(doc []byte) (int, error) {
	before := map[string]bool{"$schema": true, "bomFormat": true, "specVersion": true, "serialNumber": true, "version": true, "metadata": true}
	dec := jsontext.NewDecoder(bytes.NewReader(doc))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return 0, errors.New("encode CycloneDX: not a JSON object")
	}
	at := -1
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return 0, fmt.Errorf("encode CycloneDX: %w", err)
		}
		name := tok.String() // before the next read voids tok
		if _, err := dec.ReadValue(); err != nil {
			return 0, fmt.Errorf("encode CycloneDX: %w", err)
		}
		if !before[name] {
			break
		}
		at = int(dec.InputOffset())
	}
	if at < 0 {
		return 0, errors.New("encode CycloneDX: no fields before the components")
	}
	return at, nil
}

// encodeBOM is cyclonedx-go's encoding of bom for cyclonedxSpec.
func encodeBOM(w io.Writer, bom *cyclonedx.BOM) error {
	e := cyclonedx.NewBOMEncoder(w, cyclonedx.BOMFileFormatJSON)
	e.SetPretty(false)
	e.SetEscapeHTML(false)
	return e.EncodeVersion(bom, cyclonedxSpec)
}
