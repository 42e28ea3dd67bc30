// Package reportschema validates the reports lotse writes against the full
// published JSON schemas of their formats, vendored under testdata (each
// directory's README names the version and the source). It is test
// support: only tests import it, so the validator never reaches a binary.
package reportschema

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed testdata
var schemas embed.FS

// Kind is a report format.
type Kind string

// The report formats lotse writes.
const (
	// ContainerScanning is GitLab's container-scanning security report; the
	// schema is chosen by the report's "version".
	ContainerScanning Kind = "gitlab-container-scanning"
	// CycloneDX is a CycloneDX JSON SBOM; the schema is chosen by its
	// "specVersion".
	CycloneDX Kind = "cyclonedx"
	// SPDX is an SPDX JSON SBOM; the schema is chosen by its "spdxVersion".
	SPDX Kind = "spdx"
	// CodeQuality is GitLab's code quality report.
	CodeQuality Kind = "gitlab-codequality"
)

// files maps a kind and the version a report declares to its schema file
// and the files it references ($ref), all under testdata.
var files = map[Kind]map[string][]string{
	ContainerScanning: {"15.0.7": {"gitlab/container-scanning-report-format-15.0.7.json"}},
	CycloneDX: {
		"1.5": {"cyclonedx/bom-1.5.schema.json", "cyclonedx/spdx.schema.json", "cyclonedx/jsf-0.82.schema.json"},
		"1.6": {"cyclonedx/bom-1.6.schema.json", "cyclonedx/spdx.schema.json", "cyclonedx/jsf-0.82.schema.json"},
	},
	SPDX:        {"SPDX-2.3": {"spdx/spdx-schema-2.3.json"}},
	CodeQuality: {"": {"codequality/codequality-report.schema.json"}},
}

// Compile compiles the schema of kind at version (the version the report
// declares; "" for the code quality report, which has none). Formats
// (date-time, uri, email, ...) are asserted, not just annotated, and
// nothing is fetched: every $ref resolves to a vendored file.
func Compile(kind Kind, version string) (*jsonschema.Schema, error) {
	names, ok := files[kind][version]
	if !ok {
		return nil, fmt.Errorf("no %s schema for version %q", kind, version)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.UseLoader(refusingLoader{})
	var root string
	for i, name := range names {
		b, err := fs.ReadFile(schemas, path.Join("testdata", name))
		if err != nil {
			return nil, fmt.Errorf("read schema: %w", err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", name, err)
		}
		// A schema is registered under its $id, so that the $refs between
		// the vendored files resolve as they do between the published ones.
		id := "file:///" + name
		if m, ok := doc.(map[string]any); ok {
			if s, ok := m["$id"].(string); ok && s != "" {
				id = s
			}
		}
		if err := c.AddResource(id, doc); err != nil {
			return nil, fmt.Errorf("add %s: %w", name, err)
		}
		if i == 0 {
			root = id
		}
	}
	s, err := c.Compile(root)
	if err != nil {
		return nil, fmt.Errorf("compile %s schema %s: %w", kind, version, err)
	}
	return s, nil
}

// Validate checks report against the schema of the version it declares.
func Validate(kind Kind, report []byte) error {
	version, err := declaredVersion(kind, report)
	if err != nil {
		return err
	}
	s, err := Compile(kind, version)
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(report))
	if err != nil {
		return fmt.Errorf("%s report is not JSON: %w", kind, err)
	}
	if err := s.Validate(doc); err != nil {
		return fmt.Errorf("%s report (version %q) does not validate: %w", kind, version, err)
	}
	return nil
}

func declaredVersion(kind Kind, report []byte) (string, error) {
	if kind == CodeQuality {
		return "", nil
	}
	field := map[Kind]string{ContainerScanning: "version", CycloneDX: "specVersion", SPDX: "spdxVersion"}[kind]
	if field == "" {
		return "", fmt.Errorf("unknown report kind %q", kind)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(report, &m); err != nil {
		return "", fmt.Errorf("%s report is not a JSON object: %w", kind, err)
	}
	var v string
	if err := json.Unmarshal(m[field], &v); err != nil || v == "" {
		return "", fmt.Errorf("%s report declares no %s", kind, field)
	}
	return v, nil
}

// refusingLoader fails every load: a $ref that does not resolve to a
// vendored schema is an error, never a download.
type refusingLoader struct{}

func (refusingLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema %s is not vendored (no network)", url)
}
