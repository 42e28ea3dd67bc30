package ci

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/lotse/lotse/internal/oci"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/scan"
	"github.com/lotse/lotse/internal/sign"
)

// signFlags choose the key and the transparency log.
type signFlags struct {
	key     string
	offline bool
}

// addSignFlags adds --key and, unless the command has its own --offline
// (release: one flag for the DB and the log), --offline.
func (a *app) addSignFlags(fs *pflag.FlagSet, sf *signFlags, offlineFlag bool) {
	fs.StringVar(&sf.key, "key", a.env.get("LOTSE_SIGNING_KEY"), "private key: a file, env://VAR or a KMS URI (env LOTSE_SIGNING_KEY; its password in COSIGN_PASSWORD); without it, keyless with SIGSTORE_ID_TOKEN")
	if offlineFlag {
		fs.BoolVar(&sf.offline, "offline", a.env.get("LOTSE_SIGN_OFFLINE") == "true", "no transparency log (private sites); verify with --offline too")
	}
}

func (a *app) signOptions(sf *signFlags, rf *registryFlags, host string) sign.Options {
	u, p := a.credentialsFor(rf, host)
	return sign.Options{
		Key:      sf.key,
		IDToken:  a.env.get("SIGSTORE_ID_TOKEN"),
		Offline:  sf.offline,
		Insecure: rf.insecure,
		Username: u,
		Password: p,
	}
}

// digestArg checks that ref names a digest and returns its registry host.
func digestArg(ref string, insecure bool) (string, error) {
	d, err := oci.ParseDigest(ref, insecure)
	if err != nil {
		return "", &UsageError{Err: err}
	}
	return d.Context().RegistryStr(), nil
}

func (a *app) signCmd() *cobra.Command {
	var (
		rf registryFlags
		sf signFlags
	)
	cmd := &cobra.Command{
		Use:   "sign IMAGE@DIGEST",
		Short: "Sign an image by digest (cosign)",
		Long: `Sign an image by digest with cosign. The signature is a Sigstore bundle in the
registry, next to the image, exactly as 'cosign sign' writes it.`,
		Example: `  COSIGN_PASSWORD=... lotse sign --key cosign.key harbor.example.com/team/app@sha256:...
  lotse sign --key awskms:///alias/release harbor.example.com/team/app@sha256:...
  lotse sign harbor.example.com/team/app@sha256:...   # keyless, with SIGSTORE_ID_TOKEN from id_tokens`,
		Args: exactArgs(1, "one IMAGE@DIGEST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, err := digestArg(args[0], rf.insecure)
			if err != nil {
				return err
			}
			if err := rf.resolve(a, cmd.InOrStdin()); err != nil {
				return err
			}
			if err := sign.Sign(cmd.Context(), args[0], a.signOptions(&sf, &rf, host)); err != nil {
				return err
			}
			printf(a.stdout, "signed %s\n", args[0])
			return nil
		},
	}
	a.addRegistryFlags(cmd.Flags(), &rf)
	a.addSignFlags(cmd.Flags(), &sf, true)
	return cmd
}

func (a *app) attestCmd() *cobra.Command {
	var (
		rf        registryFlags
		sf        signFlags
		typ       string
		predicate string
	)
	cmd := &cobra.Command{
		Use:   "attest --type TYPE --predicate FILE IMAGE@DIGEST",
		Short: "Attach a signed attestation to an image (cosign)",
		Long: `Attach a signed in-toto attestation to an image by digest, as 'cosign attest'
does. TYPE is cyclonedx (an SBOM), vuln (a scan result: trivy JSON) or
slsaprovenance.`,
		Example: `  lotse attest --type cyclonedx --predicate gl-sbom-app.cdx.json --key cosign.key harbor.example.com/team/app@sha256:...`,
		Args:    exactArgs(1, "one IMAGE@DIGEST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := sign.ParseAttestationType(typ)
			if err != nil {
				return &UsageError{Err: err}
			}
			if predicate == "" {
				return usagef("--predicate FILE is required")
			}
			host, err := digestArg(args[0], rf.insecure)
			if err != nil {
				return err
			}
			if err := rf.resolve(a, cmd.InOrStdin()); err != nil {
				return err
			}
			if t == sign.Vuln {
				// A trivy JSON report is wrapped into cosign's vuln predicate.
				p, cleanup, err := vulnPredicateFile(cmd.Context(), predicate)
				if err != nil {
					return err
				}
				defer cleanup()
				predicate = p
			}
			if err := sign.Attest(cmd.Context(), args[0], t, predicate, a.signOptions(&sf, &rf, host)); err != nil {
				return err
			}
			printf(a.stdout, "attested %s (%s)\n", args[0], t)
			return nil
		},
	}
	a.addRegistryFlags(cmd.Flags(), &rf)
	a.addSignFlags(cmd.Flags(), &sf, true)
	cmd.Flags().StringVar(&typ, "type", "", "cyclonedx, spdxjson, vuln or slsaprovenance")
	cmd.Flags().StringVar(&predicate, "predicate", "", "the predicate file")
	return cmd
}

// verifyFlags say what a valid signature is: a public key, or a keyless
// identity.
type verifyFlags struct {
	key            string
	identity       string
	identityRegexp string
	issuer         string
	trustedRoot    string
	offline        bool
	// keyFlag is the name of the public key's flag: key, or verify-key
	// where --key is the signing key (rescan).
	keyFlag string
	// ownOffline: --offline is verify's own flag. Where it is not
	// (rescan: the DB's and signing's), it never conflicts with keyless.
	ownOffline bool
}

func (a *app) addVerifyFlags(fs *pflag.FlagSet, vf *verifyFlags) {
	a.addVerifyFlagsAs(fs, vf, "key")
	vf.ownOffline = true
	fs.BoolVar(&vf.offline, "offline", a.env.get("LOTSE_SIGN_OFFLINE") == "true", "key signatures: do not check the transparency log")
}

// addVerifyFlagsAs adds the public key's flag under keyFlag and the keyless
// flags, but no --offline.
func (a *app) addVerifyFlagsAs(fs *pflag.FlagSet, vf *verifyFlags, keyFlag string) {
	vf.keyFlag = keyFlag
	fs.StringVar(&vf.key, keyFlag, a.env.get("LOTSE_VERIFY_KEY"), "public key: a file, env://VAR or a KMS URI (env LOTSE_VERIFY_KEY)")
	fs.StringVar(&vf.identity, "certificate-identity", "", "keyless: the signer's identity, compared exactly, e.g. https://gitlab.com/team/app//.gitlab-ci.yml@refs/heads/main")
	fs.StringVar(&vf.identityRegexp, "certificate-identity-regexp", "", "keyless: a regular expression the whole identity must match (lotse anchors it with ^...$)")
	fs.StringVar(&vf.issuer, "certificate-oidc-issuer", "", "keyless: the OIDC issuer, compared exactly, e.g. https://gitlab.com")
	fs.StringVar(&vf.trustedRoot, "trusted-root", "", "keyless: a Sigstore trusted_root.json (private Sigstore, air-gapped sites); default: Sigstore's public-good instance")
}

// verifyOptions checks the flag combination (usage errors) and returns
// what a valid signature is. LOTSE_VERIFY_KEY and LOTSE_SIGN_OFFLINE are
// defaults for key signatures: keyless flags set them aside; an explicit
// --key or --offline with keyless flags is an error.
func (vf *verifyFlags) verifyOptions(fs *pflag.FlagSet) (sign.VerifyOptions, error) {
	keyless := vf.identity != "" || vf.identityRegexp != "" || vf.issuer != "" || vf.trustedRoot != ""
	keyFlag := "--" + vf.keyFlag
	var o sign.VerifyOptions
	switch {
	case keyless && fs.Changed(vf.keyFlag) && vf.key != "":
		return o, usagef("%s and --certificate-identity/--certificate-oidc-issuer/--trusted-root are exclusive: verify with a public key or a keyless identity", keyFlag)
	case keyless && vf.ownOffline && fs.Changed("offline") && vf.offline:
		return o, usagef("--offline is for key signatures: keyless signatures are verified with their transparency-log entry (give --trusted-root for a private or air-gapped Sigstore)")
	case !keyless && vf.key == "":
		return o, usagef("nothing to verify against: give %s, or --certificate-identity (or --certificate-identity-regexp) and --certificate-oidc-issuer for keyless signatures", keyFlag)
	case !keyless:
		o.Key, o.Offline = vf.key, vf.offline
		return o, nil
	case vf.identity != "" && vf.identityRegexp != "":
		return o, usagef("--certificate-identity (exact) and --certificate-identity-regexp are exclusive")
	case vf.identity == "" && vf.identityRegexp == "":
		return o, usagef("keyless verification needs --certificate-identity (exact) or --certificate-identity-regexp")
	case vf.issuer == "":
		return o, usagef("--certificate-oidc-issuer is required with --certificate-identity or --certificate-identity-regexp")
	}
	if vf.trustedRoot != "" {
		if _, err := os.Stat(vf.trustedRoot); err != nil {
			return o, usagef("--trusted-root: %v", err)
		}
	}
	o.Keyless = &sign.Keyless{Issuer: vf.issuer, Identity: vf.identity, IdentityRegexp: vf.identityRegexp, TrustedRoot: vf.trustedRoot}
	if err := o.Check(); err != nil {
		return o, &UsageError{Err: err}
	}
	return o, nil
}

func (a *app) verifyCmd() *cobra.Command {
	var (
		rf           registryFlags
		vf           verifyFlags
		types        []string
		promotionKey string
	)
	cmd := &cobra.Command{
		Use:   "verify IMAGE",
		Short: "Verify an image's signature and attestations (cosign)",
		Long: `Verify that an image carries a valid signature and, with --type, valid
attestations of those types. Exits 1 with the reason when anything does not
verify, 2 on a bad combination of flags.

A valid signature is one made with the private key of --key, or a keyless one:
a short-lived Fulcio certificate whose identity is exactly
--certificate-identity (or matches --certificate-identity-regexp as a whole:
lotse anchors it with ^...$) and whose OIDC issuer is exactly
--certificate-oidc-issuer, chained to the trusted root's CA, with an SCT from
its CT log and an entry in its transparency log. The trusted root is
Sigstore's public-good instance (fetched from its TUF repository), or the
trusted_root.json of --trusted-root for a private Sigstore or an air-gapped
site (no network needed then).

A GitLab CI job's identity is its CI config reference:
https://GITLAB/GROUP/PROJECT//.gitlab-ci.yml@refs/heads/BRANCH (or
@refs/tags/TAG). Compare it exactly: a regexp such as .*@refs/heads/main also
accepts any project's main branch.`,
		Example: `  lotse verify --key cosign.pub harbor.example.com/team/app@sha256:...
  lotse verify --key cosign.pub --type cyclonedx --type vuln harbor.example.com/team/app:1.2.3
  lotse verify --key cosign.pub --promotion-key lotsed.pub --type promotion harbor.example.com/team/app@sha256:...
  lotse verify --promotion-key lotsed.pub harbor.example.com/team/app@sha256:...
  lotse verify --certificate-identity 'https://gitlab.com/team/app//.gitlab-ci.yml@refs/heads/main' \
      --certificate-oidc-issuer https://gitlab.com harbor.example.com/team/app@sha256:...
  lotse verify --certificate-identity-regexp 'https://gitlab\.example\.com/team/app//\.gitlab-ci\.yml@refs/tags/v.*' \
      --certificate-oidc-issuer https://gitlab.example.com --trusted-root trusted_root.json \
      --type vuln harbor.example.com/team/app:1.2.3`,
		Args: exactArgs(1, "one IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ts []sign.AttestationType
			for _, t := range types {
				at, err := sign.ParseAttestationType(t)
				if err != nil {
					return &UsageError{Err: err}
				}
				ts = append(ts, at)
			}
			// Promotion records are signed by lotsed's key (--promotion-key);
			// given alone, only the records are verified: they say what
			// verified the image's signature.
			if slices.Contains(ts, sign.Promotion) && promotionKey == "" {
				// Whoever holds the release key could attach a record of
				// their own: only lotsed's key makes one evidence.
				return usagef("--type promotion needs --promotion-key (lotsed's public key, or LOTSE_PROMOTION_KEY): promotion records are lotsed's, not the release signer's")
			}
			recordsOnly := promotionKey != "" && vf.key == "" && vf.identity == "" && vf.identityRegexp == "" && vf.issuer == ""
			if promotionKey != "" && !slices.Contains(ts, sign.Promotion) {
				ts = append(ts, sign.Promotion)
			}
			var vo sign.VerifyOptions
			if recordsOnly {
				vo.Offline = vf.offline
			} else {
				var err error
				if vo, err = vf.verifyOptions(cmd.Flags()); err != nil {
					return err
				}
			}
			src, err := oci.ParseSource(args[0], rf.insecure)
			if err != nil {
				return &UsageError{Err: err}
			}
			if src.Kind != oci.Registry {
				return usagef("verify needs a registry reference, not %s", args[0])
			}
			if err := rf.resolve(a, cmd.InOrStdin()); err != nil {
				return err
			}
			u, p := a.credentialsFor(&rf, src.Ref.Context().RegistryStr())
			vo.Options = sign.Options{Offline: vo.Offline, Insecure: rf.insecure, Username: u, Password: p}
			if recordsOnly {
				printf(a.stdout, "signature of %s not checked (no --key): verifying lotsed's promotion records only\n", args[0])
			} else {
				if _, err := sign.Verify(cmd.Context(), args[0], vo); err != nil {
					return err
				}
				printf(a.stdout, "verified signature of %s\n", args[0])
			}
			for _, t := range ts {
				to := vo
				if t == sign.Promotion {
					to.Key, to.Keyless = promotionKey, nil
				}
				out, err := sign.VerifyAttestation(cmd.Context(), args[0], t, to)
				if err != nil {
					return fmt.Errorf("%s attestation: %w", t, err)
				}
				if t != sign.Promotion {
					printf(a.stdout, "verified %s attestation of %s%s\n", t, args[0], attestedScan(t, out))
					continue
				}
				recs, err := promotion.ReadRecords(out)
				if err != nil {
					return fmt.Errorf("promotion attestation: %w", err)
				}
				printf(a.stdout, "verified %s attestation of %s\n", t, args[0])
				for _, r := range recs {
					printf(a.stdout, "%s", r.Summary())
				}
			}
			return nil
		},
	}
	a.addRegistryFlags(cmd.Flags(), &rf)
	a.addVerifyFlags(cmd.Flags(), &vf)
	cmd.Flags().StringVar(&promotionKey, "promotion-key", a.env.get("LOTSE_PROMOTION_KEY"),
		"lotsed's public key (file, env://VAR or KMS URI; env LOTSE_PROMOTION_KEY): verify its promotion records (--type promotion) with it; alone, without --key, only the records are verified")
	cmd.Flags().StringSliceVar(&types, "type", nil, "also verify attestations of these types (repeatable): cyclonedx, spdxjson, vuln, slsaprovenance, or promotion (lotsed's promotion record, https://lotse.dev/promotion/v1: printed)")
	return cmd
}

// vulnPredicateFile returns a file holding cosign's vuln predicate for the
// report in path: path itself when it already is one, else a temporary file.
func vulnPredicateFile(ctx context.Context, path string) (string, func(), error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("--predicate: %w", err)
	}
	p, err := scan.VulnPredicate(ctx, b)
	if err != nil {
		return "", nil, &UsageError{Err: fmt.Errorf("--predicate %s: %w", path, err)}
	}
	f, err := os.CreateTemp("", "lotse-vuln-*.json")
	if err != nil {
		return "", nil, err
	}
	_, err = f.Write(p)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", nil, err
	}
	return f.Name(), func() { os.Remove(f.Name()) }, nil
}
