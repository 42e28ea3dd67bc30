package ci

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lotse/lotse/internal/atomicfile"
	"github.com/lotse/lotse/internal/scaffold"
)

func (a *app) initCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the starting files of a GitOps repository for lotse",
		Args:  exactArgs(0, "a subcommand"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.initGitOpsCmd())
	return cmd
}

func (a *app) initGitOpsCmd() *cobra.Command {
	var (
		o         scaffold.Options
		publicKey string
		force     bool
	)
	cmd := &cobra.Command{
		Use:   "gitops DIR --app APP [--app APP]... --stages S1,S2,...",
		Short: "Write a GitOps repository: lotse.yaml, values files, a chart and the ArgoCD objects",
		Long: `Write the files of a new GitOps repository into DIR:

  lotse.yaml                          apps and stages: the first stage takes commits,
                                      middle stages merge requests with gates, the
                                      last one merge requests with 2 approvals
  apps/<app>/envs/<stage>/values.yaml image.repository and image.digest, written by lotse bump
  charts/app/                         a minimal chart that deploys repository@digest
  argocd/appproject.yaml              AppProject lotse: this repository, the apps'
                                      namespaces <app>-<stage>, a few namespaced kinds
  argocd/applicationset-*.yaml        git directory generator over apps/*/envs/*:
                                      automated sync (prune, self-heal) before the last
                                      stage, manual sync in the last
  argocd/notifications-cm.yaml        ArgoCD notifications to lotsed /webhooks/argocd

Every input is checked before anything is written; a bad one is a usage
error (exit 2) and nothing is written. Existing files are not overwritten
unless --force is given; other files in DIR are left alone.`,
		Example: `  lotse init gitops gitops --app shop --app cart --stages dev,staging,production
  lotse init gitops . --app api --stages dev,prod --registry registry.example.com/acme \
      --gitops-project acme/deploy --namespace-prefix acme- --public-key cosign.pub`,
		Args: exactArgs(1, "the directory DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if publicKey != "" {
				b, err := os.ReadFile(publicKey)
				if err != nil {
					return fmt.Errorf("--public-key: %w", err)
				}
				o.PublicKey = b
			}
			files, err := scaffold.Generate(o)
			var ie *scaffold.InputError
			if errors.As(err, &ie) {
				return &UsageError{Err: err}
			}
			if err != nil {
				return err
			}
			return a.writeTree(dir, files, force)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Apps, "app", nil, "app name (repeat, or comma-separated)")
	f.StringSliceVar(&o.Stages, "stages", nil, "stage names in promotion order, comma-separated (at least two)")
	f.StringVar(&o.Registry, "registry", scaffold.DefaultRegistry, "image registry and path; the image of app A is REGISTRY/A")
	f.StringVar(&o.SourceGroup, "source-group", "", "GitLab group of the apps' projects (default: the path of --registry)")
	f.StringVar(&o.GitOpsProject, "gitops-project", scaffold.DefaultGitOpsProject, "GitLab path of the GitOps project")
	f.StringVar(&o.RepoURL, "repo-url", "", "URL ArgoCD clones the GitOps repository from (default https://gitlab.example.com/GITOPS-PROJECT.git)")
	f.StringVar(&o.Cluster, "cluster", scaffold.DefaultCluster, "API server URL of the destination cluster")
	f.StringVar(&o.NamespacePrefix, "namespace-prefix", "", "prefix of the namespaces <app>-<stage>; the AppProject then allows PREFIX*")
	f.StringVar(&o.LotsedURL, "lotsed-url", scaffold.DefaultLotsedURL, "base URL of lotsed, for the ArgoCD notifications")
	f.StringVar(&publicKey, "public-key", "", "cosign public key to write to keys/cosign.pub")
	f.BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

// writeTree writes files under dir: first it checks that none exists (unless
// force), then writes each atomically.
func (a *app) writeTree(dir string, files map[string][]byte, force bool) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	paths := slices.Sorted(maps.Keys(files))
	if !force {
		var exist []string
		for _, p := range paths {
			_, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(p)))
			switch {
			case err == nil:
				exist = append(exist, p)
			case !errors.Is(err, fs.ErrNotExist):
				return fmt.Errorf("check %s: %w", p, err)
			}
		}
		if len(exist) > 0 {
			return fmt.Errorf("%d file(s) exist in %s (%s); nothing written; --force overwrites them",
				len(exist), dir, strings.Join(exist, ", "))
		}
	}
	for _, p := range paths {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(full), err)
		}
		if err := atomicfile.Write(full, files[p]); err != nil {
			return err
		}
	}
	printf(a.stdout, "wrote %d files to %s\n", len(paths), dir)
	printf(a.stdout, "next: lotse config validate %s, then follow %s\n",
		filepath.Join(dir, scaffold.ConfigFile), filepath.Join(dir, "README.md"))
	return nil
}
