package webhook

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

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

// actionName is the stored name of an action's type.
func actionName(a promotion.Action) (string, error) {
	switch a.(type) {
	case promotion.OpenMR:
		return "open-mr", nil
	case promotion.Rollback:
		return "rollback", nil
	case promotion.MergeMR:
		return "merge-mr", nil
	case promotion.CheckGates:
		return "check-gates", nil
	case promotion.SetStatus:
		return "set-status", nil
	case promotion.UpsertComment:
		return "upsert-comment", nil
	case promotion.Reply:
		return "reply", nil
	case promotion.Audit:
		return "audit", nil
	case promotion.CloseMR:
		return "close-mr", nil
	case promotion.ReadAuthors:
		return "read-authors", nil
	case promotion.Reconcile:
		return "reconcile", nil
	}
	return "", fmt.Errorf("action %T has no outbox name", a)
}

// legacyNames are the names lotsed wrote before the names were stable (the
// Go type, version 0): outboxes stored by an older lotsed still decode.
func legacyName(t string) (string, bool) {
	switch t {
	case "promotion.OpenMR":
		return "open-mr", true
	case "promotion.Rollback":
		return "rollback", true
	case "promotion.MergeMR":
		return "merge-mr", true
	case "promotion.CheckGates":
		return "check-gates", true
	case "promotion.SetStatus":
		return "set-status", true
	case "promotion.UpsertComment":
		return "upsert-comment", true
	case "promotion.Reply":
		return "reply", true
	case "promotion.Audit":
		return "audit", true
	}
	return "", false
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
	name, strict := e.Type, true
	switch {
	case e.V == 0:
		n, ok := legacyName(e.Type)
		if !ok {
			return nil, fmt.Errorf("%w: unknown action %q of version 0", errUndecodable, e.Type)
		}
		name, strict = n, false // older payloads may carry fields since dropped
	case e.V != actionVersion:
		return nil, fmt.Errorf("%w: action %q has payload version %d, this lotsed reads version %d (a newer lotsed wrote it)",
			errUndecodable, e.Type, e.V, actionVersion)
	}
	switch name {
	case "open-mr":
		return decodeAs[promotion.OpenMR](name, e.Data, strict)
	case "rollback":
		return decodeAs[promotion.Rollback](name, e.Data, strict)
	case "merge-mr":
		return decodeAs[promotion.MergeMR](name, e.Data, strict)
	case "check-gates":
		return decodeAs[promotion.CheckGates](name, e.Data, strict)
	case "set-status":
		return decodeAs[promotion.SetStatus](name, e.Data, strict)
	case "upsert-comment":
		return decodeAs[promotion.UpsertComment](name, e.Data, strict)
	case "reply":
		return decodeAs[promotion.Reply](name, e.Data, strict)
	case "audit":
		return decodeAs[promotion.Audit](name, e.Data, strict)
	case "close-mr":
		return decodeAs[promotion.CloseMR](name, e.Data, strict)
	case "read-authors":
		return decodeAs[promotion.ReadAuthors](name, e.Data, strict)
	case "reconcile":
		return decodeAs[promotion.Reconcile](name, e.Data, strict)
	}
	return nil, fmt.Errorf("%w: unknown action %q", errUndecodable, e.Type)
}

func decodeAs[T promotion.Action](name string, data []byte, strict bool) (promotion.Action, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %s action: %w", errUndecodable, name, err)
	}
	return v, nil
}

// key identifies an outbox entry, to pop exactly the entry carried out.
func (e envelope) key() string {
	sum := sha256.Sum256(append([]byte(fmt.Sprintf("%s\n%d\n", e.Type, e.V)), e.Data...))
	return hex.EncodeToString(sum[:])
}
