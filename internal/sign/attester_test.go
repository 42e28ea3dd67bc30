package sign

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/lotse/lotse/internal/promotion"
)

// lotsed's promotion record is attached with its own key under the custom
// predicate type and verifies as such with `lotse verify --type promotion`
// (VerifyAttestation), and with nothing else.
func TestAttesterPromotionRecord(t *testing.T) {
	ctx := context.Background()
	k := writeKeys(t)
	t.Setenv("COSIGN_PASSWORD", "") // the password comes from AttesterKey
	img, other := twoImages(t)
	pem, err := os.ReadFile(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	getenv := func(v string) string {
		if v == "LOTSED_KEY" {
			return string(pem)
		}
		return ""
	}
	if _, err := NewAttester(Options{Offline: true}, AttesterKey{Ref: k.priv, Password: []byte("wrong")}, getenv, os.ReadFile); err == nil {
		t.Fatal("a wrong password was accepted at start")
	}
	if _, err := NewAttester(Options{Offline: true}, AttesterKey{Ref: "env://NOPE", Password: []byte("correct horse")}, getenv, os.ReadFile); err == nil {
		t.Fatal("an empty env:// key was accepted")
	}
	if _, err := NewAttester(Options{Offline: true}, AttesterKey{}, getenv, os.ReadFile); err == nil {
		t.Fatal("no key was accepted")
	}
	a, err := NewAttester(Options{Offline: true}, AttesterKey{Ref: "env://LOTSED_KEY", Password: []byte("correct horse")}, getenv, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rec := []byte(`{"app":"shop","stage":"production"}`)
	if err := a.AttestPredicate(ctx, img, promotion.RecordPredicateType, rec); err != nil {
		t.Fatalf("AttestPredicate: %v", err)
	}
	typ, err := ParseAttestationType("promotion")
	if err != nil || typ != Promotion || string(typ) != "https://lotse.dev/promotion/v1" {
		t.Fatalf("ParseAttestationType(promotion) = %q, %v", typ, err)
	}
	vo := VerifyOptions{Options: Options{Offline: true}, Key: k.pub}
	out, err := VerifyAttestation(ctx, img, Promotion, vo)
	if err != nil {
		t.Fatalf("VerifyAttestation: %v", err)
	}
	var env struct{ Payload string }
	if err := json.Unmarshal([]byte(strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]), &env); err != nil {
		t.Fatalf("envelope: %v\n%s", err, out)
	}
	st, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var statement struct {
		PredicateType string          `json:"predicateType"`
		Predicate     json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(st, &statement); err != nil {
		t.Fatal(err)
	}
	if statement.PredicateType != promotion.RecordPredicateType || !strings.Contains(string(statement.Predicate), `"production"`) {
		t.Fatalf("statement = %s", st)
	}
	if _, err := VerifyAttestation(ctx, img, Promotion, VerifyOptions{Options: Options{Offline: true}, Key: k.otherPub}); err == nil {
		t.Error("the record verified with another key")
	}
	if _, err := VerifyAttestation(ctx, img, Vuln, vo); err == nil {
		t.Error("the record passed for a vuln attestation")
	}
	if _, err := VerifyAttestation(ctx, other, Promotion, vo); err == nil {
		t.Error("an image without a record verified")
	}
	// lotsed reads back what it attached with its own (loaded) key.
	if got, err := a.Attested(ctx, img, promotion.RecordPredicateType); err != nil || !strings.Contains(string(got), "payload") {
		t.Errorf("Attested = %s, %v", got, err)
	}
	if _, err := a.Attested(ctx, other, promotion.RecordPredicateType); err == nil {
		t.Error("Attested found a record on an image without one")
	}
	if err := a.AttestPredicate(ctx, img, "nonsense", rec); err == nil {
		t.Error("an unknown predicate type name was accepted")
	}
}
