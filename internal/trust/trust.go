// Package trust says whose signature a released image must carry: a
// public key, or a keyless identity under a trusted Sigstore root. It is
// plain data shared by lotse.yaml's model (gitops), cosign's adapter (sign)
// and lotsed's gates (webhook), so that none of them imports another.
package trust

import (
	"errors"
	"fmt"
	"regexp"
)

// Signer is whose signature counts: exactly one of Key and Keyless.
type Signer struct {
	// Key is a cosign public key: a file, env://VAR or a KMS URI.
	Key     string
	Keyless *Keyless
}

// Keyless says whose keyless signatures are valid and which Sigstore
// vouches for them. The certificate's OIDC issuer must equal Issuer and its
// identity (subject alternative name) must equal Identity or match
// IdentityRegexp, which lotse anchors at both ends; give exactly one of
// the two.
//
// For a GitLab CI job the identity is the job's CI config reference, e.g.
// https://gitlab.com/team/app//.gitlab-ci.yml@refs/heads/main, and the
// issuer the GitLab URL, e.g. https://gitlab.com.
type Keyless struct {
	// Issuer is the OIDC issuer, compared exactly.
	Issuer string
	// Identity is the certificate identity, compared exactly.
	Identity string
	// IdentityRegexp is a regular expression (Go syntax) the whole
	// identity must match: it is checked as ^(?:IdentityRegexp)$.
	IdentityRegexp string
	// TrustedRoot is a Sigstore trusted_root.json: the Fulcio CAs,
	// transparency logs, CT logs and timestamp authorities to trust, for
	// a private Sigstore or an air-gapped site. Empty means Sigstore's
	// public-good instance, whose trusted root cosign fetches through TUF
	// (network).
	TrustedRoot string
}

// AnchoredIdentityRegexp is the regular expression that IdentityRegexp
// stands for: it must match the whole identity.
func (k Keyless) AnchoredIdentityRegexp() string {
	return "^(?:" + k.IdentityRegexp + ")$"
}

// Check reports what is missing or contradictory in k.
func (k Keyless) Check() error {
	switch {
	case k.Issuer == "":
		return errors.New("keyless verification needs the OIDC issuer")
	case k.Identity == "" && k.IdentityRegexp == "":
		return errors.New("keyless verification needs the signer's identity, exact or as a regular expression")
	case k.Identity != "" && k.IdentityRegexp != "":
		return errors.New("keyless verification takes the identity exactly or as a regular expression, not both")
	}
	if k.IdentityRegexp != "" {
		// Compiled alone first: a regexp that closes the group lotse wraps
		// it in (x)|.*(y) would escape the anchors.
		for _, re := range []string{k.IdentityRegexp, k.AnchoredIdentityRegexp()} {
			if _, err := regexp.Compile(re); err != nil {
				return fmt.Errorf("identity regular expression: %w", err)
			}
		}
	}
	return nil
}
