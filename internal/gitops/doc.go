// Package gitops holds the GitOps side of lotse as pure functions: the
// lotse.yaml model and its validation, exact edits of Helm values files, image
// references, branch names and the commit trailers lotse records.
//
// Nothing in this package does I/O. Callers pass bytes and values in and get
// values back, so every rule here can be tested without a repository, a
// network or a clock.
//
// The values editor ([SetValues]) never re-encodes a document. It parses the
// file only to learn where the target scalar is and splices the new text into
// the original bytes, so comments, key order, indentation, quoting, anchors,
// line endings and byte order marks of everything else stay byte-identical.
// Each edit is checked by parsing the result again: an edit that would change
// anything but its target is refused instead of written.
package gitops
