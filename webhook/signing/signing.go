// Package signing gives lotsed cosign (internal/sign) for its gates and its
// promotion records. It stands apart from package webhook so that webhook
// does not link cosign; cmd/lotsed and the end-to-end tests pass these two
// to webhook.Run.
package signing

import (
	"os"

	"github.com/lotse/lotse/internal/sign"
	"github.com/lotse/lotse/webhook"
)

// Verifier is cosign's verification for the gates, with r's access.
func Verifier(r webhook.Registry) webhook.Verifier {
	return sign.GateVerifier{Options: options(r)}
}

// Attester is cosign's signing of promotion records with lotsed's own key
// (--signing-key).
func Attester(k webhook.SigningKey, r webhook.Registry, getenv func(string) string) (webhook.Attester, error) {
	a, err := sign.NewAttester(options(r), sign.AttesterKey{Ref: k.Ref, Password: k.Password}, getenv, os.ReadFile)
	if err != nil {
		return nil, err
	}
	return a, nil
}

func options(r webhook.Registry) sign.Options {
	return sign.Options{Insecure: r.Insecure, Offline: r.Offline, Username: r.Username, Password: r.Password}
}
