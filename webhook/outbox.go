package webhook

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/lotse/lotse/internal/promotion"
)

// record is what is stored per app: the state machine's state and the
// actions it asked for that are not done yet. Both are written in one
// write, so a crash between saving the state and acting only repeats an
// action, never loses one.
type record struct {
	State  promotion.State `json:"state"`
	Outbox []envelope      `json:"outbox,omitempty"`
}

// envelope is an action in the outbox: a stable name, the version of its
// payload and the payload. The names are part of the stored format: renaming
// a Go type changes nothing, renaming an action needs a new name here and a
// decoder for the old one.
type envelope struct {
	Type string          `json:"type"`
	V    int             `json:"v,omitempty"`
	Data json.RawMessage `json:"data"`
}

// actionVersion is the payload version lotsed writes.
const actionVersion = 1

// actionKind is an action type the outbox stores: its stable name, and a
// zero value (whose Go type name older lotsed wrote as the name, version
// 0, and which decoding fills in).
type actionKind struct {
	name string
	zero promotion.Action
}

// actionKinds are every action the engine emits. A new action needs a line
// here; renaming one needs a new name and this line kept for the old.
func actionKinds() []actionKind {
	return []actionKind{
		{"open-mr", promotion.OpenMR{}},
		{"rollback", promotion.Rollback{}},
		{"merge-mr", promotion.MergeMR{}},
		{"check-gates", promotion.CheckGates{}},
		{"set-status", promotion.SetStatus{}},
		{"upsert-comment", promotion.UpsertComment{}},
		{"reply", promotion.Reply{}},
		{"audit", promotion.Audit{}},
		{"close-mr", promotion.CloseMR{}},
		{"read-authors", promotion.ReadAuthors{}},
		{"reconcile", promotion.Reconcile{}},
		{"attest-promotion", promotion.AttestPromotion{}},
		{"deploy", promotion.Deploy{}},
	}
}

// actionName is the stored name of an action's type.
func actionName(a promotion.Action) (string, error) {
	for _, k := range actionKinds() {
		if reflect.TypeOf(k.zero) == reflect.TypeOf(a) {
			return k.name, nil
		}
	}
	return "", fmt.Errorf("action %T has no outbox name", a)
}

// encodeAction wraps an action for the outbox.
func encodeAction(a promotion.Action) (envelope, error) {
	name, err := actionName(a)
	if err != nil {
		return envelope{}, err
	}
	b, err := json.Marshal(a)
	if err != nil {
		return envelope{}, fmt.Errorf("encode %s action: %w", name, err)
	}
	return envelope{Type: name, V: actionVersion, Data: b}, nil
}

// errUndecodable is wrapped by decodeAction's errors: the outbox holds an
// action this lotsed cannot carry out (written by a newer lotsed, or
// corrupted). Retrying cannot help; it is never skipped either.
var errUndecodable = errors.New("undecodable outbox action")

// decodeAction unwraps an outbox entry.
func decodeAction(e envelope) (promotion.Action, error) {
	if e.V != 0 && e.V != actionVersion {
		return nil, fmt.Errorf("%w: action %q has payload version %d, this lotsed reads version %d (a newer lotsed wrote it)",
			errUndecodable, e.Type, e.V, actionVersion)
	}
	for _, k := range actionKinds() {
		legacy := fmt.Sprintf("%T", k.zero)
		if (e.V == actionVersion && e.Type == k.name) || (e.V == 0 && e.Type == legacy) {
			// Older payloads may carry fields since dropped: only the
			// current version is decoded strictly.
			return decodeAs(k, e.Data, e.V == actionVersion)
		}
	}
	if e.V == 0 {
		return nil, fmt.Errorf("%w: unknown action %q of version 0", errUndecodable, e.Type)
	}
	return nil, fmt.Errorf("%w: unknown action %q", errUndecodable, e.Type)
}

func decodeAs(k actionKind, data []byte, strict bool) (promotion.Action, error) {
	v := reflect.New(reflect.TypeOf(k.zero))
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v.Interface()); err != nil {
		return nil, fmt.Errorf("%w: %s action: %w", errUndecodable, k.name, err)
	}
	return v.Elem().Interface().(promotion.Action), nil
}

// key identifies an outbox entry, to pop exactly the entry carried out.
func (e envelope) key() string {
	sum := sha256.Sum256(append([]byte(fmt.Sprintf("%s\n%d\n", e.Type, e.V)), e.Data...))
	return hex.EncodeToString(sum[:])
}
