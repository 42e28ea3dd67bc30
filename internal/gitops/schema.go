package gitops

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of lotse.yaml for editors, for
// example with a "# yaml-language-server: $schema=..." comment. ParseConfig
// checks everything the schema checks, and more.
//
//go:embed lotse.schema.json
var Schema []byte
