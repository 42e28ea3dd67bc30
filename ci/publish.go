package ci

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/lotse/lotse/internal/atomicfile"
	"github.com/lotse/lotse/internal/oci"
)

func (a *app) publishCmd() *cobra.Command {
	var (
		rf     registryFlags
		tags   []string
		dotEnv string
	)
	cmd := &cobra.Command{
		Use:   "publish SRC DST",
		Short: "Copy an image into a registry by digest",
		Long: `Copy an image from a registry, an OCI layout (oci:DIR[:TAG]) or a docker archive
(docker-archive:FILE) into DST, a repository in Harbor or any OCI registry,
by digest, and tag it. Prints DST@sha256:...; --dotenv writes LOTSE_IMAGE and
LOTSE_DIGEST for later jobs (artifacts:reports:dotenv).`,
		Example: `  lotse publish oci:build/image harbor.example.com/team/app --tag $CI_COMMIT_SHORT_SHA --dotenv publish.env`,
		Args:    exactArgs(2, "SRC and DST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dst, err := oci.ParseRepository(args[1], rf.insecure)
			if err != nil {
				return &UsageError{Err: err}
			}
			if err := oci.CheckTags(tags); err != nil {
				return &UsageError{Err: err}
			}
			if err := rf.resolve(a, cmd.InOrStdin()); err != nil {
				return err
			}
			ctx := cmd.Context()
			src, err := oci.ParseSource(args[0], rf.insecure)
			if err != nil {
				return &UsageError{Err: err}
			}
			hosts := []string{dst.RegistryStr()}
			if src.Kind == oci.Registry {
				hosts = append(hosts, src.Ref.Context().RegistryStr())
			}
			opts, err := a.ociOptions(&rf, hosts...)
			if err != nil {
				return err
			}
			art, err := oci.Open(ctx, src, opts)
			if err != nil {
				return err
			}
			d, err := a.push(ctx, art, dst, opts)
			if err != nil {
				return err
			}
			if err := oci.Tag(ctx, art, dst, tags, opts); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			if err := a.writeDotenv(dotEnv, d); err != nil {
				return err
			}
			printf(a.stdout, "%s\n", d)
			return nil
		},
	}
	a.addRegistryFlags(cmd.Flags(), &rf)
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "tag to set in DST (repeatable)")
	cmd.Flags().StringVar(&dotEnv, "dotenv", "", "write LOTSE_IMAGE and LOTSE_DIGEST to FILE")
	return cmd
}

// push writes art to dst by digest.
func (a *app) push(ctx context.Context, art *oci.Artifact, dst name.Repository, opts oci.Options) (name.Digest, error) {
	var d name.Digest
	err := a.section("publish", "Publish to "+dst.String(), func() error {
		var err error
		d, err = oci.Push(ctx, art, dst, opts)
		return err
	})
	if err != nil {
		return name.Digest{}, fmt.Errorf("publish: %w", err)
	}
	a.log.InfoContext(ctx, "published", "image", d.String())
	return d, nil
}

// writeDotenv writes LOTSE_IMAGE and LOTSE_DIGEST for later jobs, when asked.
func (a *app) writeDotenv(path string, d name.Digest) error {
	if path == "" {
		return nil
	}
	b, err := dotenv(map[string]string{"LOTSE_IMAGE": d.String(), "LOTSE_DIGEST": d.DigestStr()})
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b)
}
