package sign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/sigstore/cosign/v3/cmd/cosign/cli/generate"
	"github.com/sigstore/cosign/v3/cmd/cosign/cli/options"
	"github.com/sigstore/cosign/v3/cmd/cosign/cli/signcommon"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	"github.com/spf13/cobra"
)

// An SBOM's attestation embeds the document as it is. cosign's attest
// parses a CycloneDX or SPDX predicate into a map, builds a protobuf Struct
// of it and writes the statement through protobuf's JSON: for the 2.8 MB
// SBOM of a Debian image of 10,000 files, 0.11 s of CPU at the end of every
// release, and every number in the document turned into a float. lotse
// writes the same in-toto statement (type, subject, predicate type) around
// the document's own bytes, and signs and attaches it with cosign's own
// functions, from the same flags cosign's attest command parses, so the
// bundle is the one cosign makes (DSSE, Sigstore bundle, OCI referrer) and
// cosign verify-attestation checks it. Options cosign's command takes
// another way for (the legacy bundle format) go through cosign's command.

// documentTypes are the attestation types whose predicate is a JSON
// document embedded as it is.
var documentTypes = map[AttestationType]bool{CycloneDX: true, SPDX: true}

// errLegacyBundle says the options ask for cosign's legacy bundle format,
// which attestDocument leaves to cosign's command.
var errLegacyBundle = errors.New("legacy bundle format")

// statement is an in-toto v0.1 statement, as cosign writes it, without its
// predicate.
type statement struct {
	Type          string    `json:"_type"`
	PredicateType string    `json:"predicateType"`
	Subject       []subject `json:"subject"`
}

type subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// newStatement is the statement of predicate (a JSON object, embedded
// byte for byte but for the white space around it) about the image at d.
func newStatement(d name.Digest, predicateType string, predicate []byte) ([]byte, error) {
	predicate = bytes.TrimSpace(predicate)
	if !bytes.HasPrefix(predicate, []byte("{")) || !json.Valid(predicate) {
		return nil, errors.New("predicate: not a JSON object")
	}
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(statement{
		Type:          in_toto.StatementInTotoV01,
		PredicateType: predicateType,
		Subject:       []subject{{Name: d.Repository.String(), Digest: map[string]string{h.Algorithm: h.Hex}}},
	}); err != nil {
		return nil, err
	}
	// {"_type":...,"subject":[...]}\n becomes {...,"predicate":PREDICATE}.
	head := bytes.TrimSuffix(bytes.TrimSpace(b.Bytes()), []byte("}"))
	out := make([]byte, 0, len(head)+len(predicate)+16)
	out = append(out, head...)
	out = append(out, `,"predicate":`...)
	out = append(out, predicate...)
	return append(out, '}'), nil
}

// attestDocument is cosign's attest command line args (without the
// command's name) for a document predicate type (documentTypes): the
// flags are cosign's, parsed by cosign's options, and the signing is what
// cosign's attest does with them, new bundle format only.
func attestDocument(ctx context.Context, args []string) error {
	o := &options.AttestOptions{}
	cmd := &cobra.Command{
		Use:              "attest",
		Args:             cobra.ExactArgs(1),
		PersistentPreRun: options.BindViper,
		SilenceErrors:    true,
		SilenceUsage:     true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !o.NewBundleFormat {
				return errLegacyBundle
			}
			if o.NoUpload && o.BundlePath == "" {
				return fmt.Errorf("must enable upload to the OCI registry or specify a local --bundle path with --new-bundle-format")
			}
			return attestDocumentRun(cmd.Context(), o, args[0])
		},
	}
	o.AddFlags(cmd)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

// attestDocumentRun is cosign's attest (cli.Attest's RunE and
// attest.AttestCommand.Exec, cosign v3) for the new bundle format, with
// the statement built by newStatement.
func attestDocumentRun(ctx context.Context, o *options.AttestOptions, imageRef string) error {
	oidcClientSecret, err := o.OIDC.ClientSecret()
	if err != nil {
		return err
	}
	ko := options.KeyOpts{
		KeyRef:                         o.Key,
		PassFunc:                       generate.GetPass,
		Sk:                             o.SecurityKey.Use,
		Slot:                           o.SecurityKey.Slot,
		FulcioURL:                      o.Fulcio.URL,
		IDToken:                        o.Fulcio.IdentityToken,
		FulcioAuthFlow:                 o.Fulcio.AuthFlow,
		InsecureSkipFulcioVerify:       o.Fulcio.InsecureSkipFulcioVerify,
		RekorURL:                       o.Rekor.URL,
		OIDCIssuer:                     o.OIDC.Issuer,
		OIDCClientID:                   o.OIDC.ClientID,
		OIDCClientSecret:               oidcClientSecret,
		OIDCRedirectURL:                o.OIDC.RedirectURL,
		OIDCProvider:                   o.OIDC.Provider,
		SkipConfirmation:               o.SkipConfirmation,
		TSAClientCACert:                o.TSAClientCACert,
		TSAClientKey:                   o.TSAClientKey,
		TSAClientCert:                  o.TSAClientCert,
		TSAServerName:                  o.TSAServerName,
		TSAServerURL:                   o.TSAServerURL,
		IssueCertificateForExistingKey: o.IssueCertificate,
		BundlePath:                     o.BundlePath,
		NewBundleFormat:                o.NewBundleFormat,
	}
	if err := signcommon.LoadTrustedMaterialAndSigningConfig(ctx, &ko, o.UseSigningConfig, o.SigningConfigPath,
		o.Rekor.URL, o.Fulcio.URL, o.OIDC.Issuer, o.TSAServerURL, o.TrustedRootPath, o.TlogUpload,
		o.NewBundleFormat, "", o.Key, o.IssueCertificate,
		"", "", "", "", "", ""); err != nil {
		return err
	}
	if options.NOf(ko.KeyRef, ko.Sk) > 1 {
		return &options.KeyParseError{}
	}
	if o.RekorEntryType != "dsse" && o.RekorEntryType != "intoto" {
		return fmt.Errorf("unknown value for rekor-entry-type")
	}
	if o.Predicate.Path == "" {
		return fmt.Errorf("predicate cannot be empty")
	}
	predicateURI, err := options.ParsePredicateType(o.Predicate.Type)
	if err != nil {
		return err
	}
	ref, err := signcommon.ParseOCIReference(ctx, imageRef, o.Registry.NameOptions()...)
	if err != nil {
		return fmt.Errorf("parsing reference: %w", err)
	}
	ociremoteOpts, err := o.Registry.ClientOpts(ctx)
	if err != nil {
		return err
	}
	if o.Registry.AllowHTTPRegistry || o.Registry.AllowInsecure {
		ociremoteOpts = append(ociremoteOpts, ociremote.WithNameOptions(name.Insecure))
	}
	digest, err := ociremote.ResolveDigest(ref, ociremoteOpts...)
	if err != nil {
		return err
	}
	predicate, err := os.ReadFile(o.Predicate.Path)
	if err != nil {
		return fmt.Errorf("getting predicate reader: %w", err)
	}
	payload, err := newStatement(digest, predicateURI, predicate)
	if err != nil {
		return err
	}
	bundleOpts := signcommon.CommonBundleOpts{
		Payload:       payload,
		Digest:        digest,
		PredicateType: predicateURI,
		BundlePath:    o.BundlePath,
		Upload:        !o.NoUpload,
		OCIRemoteOpts: ociremoteOpts,
	}
	if ko.SigningConfig == nil {
		if ko.SigningConfig, err = signcommon.NewSigningConfigFromKeyOpts(ko, o.TlogUpload); err != nil {
			return fmt.Errorf("creating signing config: %w", err)
		}
	}
	bundle, _, _, err := signcommon.NewAttestationBundle(ctx, ko, o.Cert, o.CertChain, bundleOpts, ko.SigningConfig, ko.TrustedMaterial)
	if err != nil {
		return fmt.Errorf("creating bundle: %w", err)
	}
	if o.BundlePath != "" {
		if err := os.WriteFile(o.BundlePath, bundle, 0o600); err != nil {
			return fmt.Errorf("create bundle file: %w", err)
		}
	}
	if o.NoUpload {
		return nil
	}
	if err := ociremote.WriteAttestationNewBundleFormat(digest, bundle, predicateURI, ociremoteOpts...); err != nil {
		return fmt.Errorf("writing bundle: %w", err)
	}
	return nil
}
