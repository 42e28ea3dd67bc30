package ci

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/lotse/lotse/internal/doctor"
)

func (a *app) doctorCmd() *cobra.Command {
	var (
		gf        gitopsFlags
		lotsedURL string
		botUser   string
		format    string
	)
	cmd := &cobra.Command{
		Use:   "doctor [--lotsed-url URL] [--format text|json]",
		Short: "Check that a GitOps project is set up as lotse and lotsed need it",
		Long: `Check the GitOps project as lotse's GitLab user sees it, with that user's
token (LOTSE_GITLAB_TOKEN, never printed):

  - lotse.yaml is on the default branch, valid, and names this project;
  - lotse's user is Maintainer (or more) of the project;
  - the default branch and lotse/* are protected so that only Maintainers
    push and merge, and lotse's user may;
  - who may merge into the default branch (a warning for anyone but lotse);
  - enough members may approve for the approval stages;
  - lotsed's webhook (--lotsed-url or LOTSE_URL + /webhooks/gitlab) exists
    with push, merge request, comment and pipeline events;
  - signing.publicKey is in the repository (or a KMS URI) and is a public key,
    or signing.keyless has its trusted root and no identity any project has;
  - every app's sourceProject is readable by lotse's user, with the
    Developer role there to post commit statuses.

Each finding prints on one line (✓ or ✗), a failed one with how to fix it
(the GitLab settings page and the API call). Exit 1 when any finding is an
error, 0 otherwise (warnings included). lotsed serves the same report at
GET /api/v1/doctor.`,
		Example: `  LOTSE_GITLAB_TOKEN=... lotse doctor --gitops-project platform/gitops --lotsed-url https://lotsed.example.com
  lotse doctor --format json`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return usagef("--format: unknown format %q (want text or json)", format)
			}
			gl, err := a.gitlabClient(&gf)
			if err != nil {
				return err
			}
			r := doctor.Check(cmd.Context(), gl, doctor.Options{Project: gf.project, LotsedURL: lotsedURL, BotUsername: botUser})
			if format == "json" {
				b, err := json.MarshalIndent(r, "", "  ")
				if err != nil {
					return err
				}
				printf(a.stdout, "%s\n", b)
			} else {
				printReport(a.stdout, r)
			}
			if !r.OK {
				return fmt.Errorf("doctor: %s has %s", r.Project, counts(r))
			}
			return nil
		},
	}
	a.addGitOpsFlags(cmd.Flags(), &gf)
	cmd.Flags().StringVar(&lotsedURL, "lotsed-url", a.env.get("LOTSE_URL"), "lotsed's URL; its webhook must deliver to URL/webhooks/gitlab (env LOTSE_URL; empty: any hook to /webhooks/gitlab)")
	cmd.Flags().StringVar(&botUser, "bot-user", a.env.get("LOTSE_BOT_USER"), "lotse's GitLab username when the token is another user's (env LOTSE_BOT_USER)")
	cmd.Flags().StringVar(&format, "format", "text", "output: text or json")
	return cmd
}

// printReport writes one line per finding, and the fix under a failed one.
func printReport(w io.Writer, r doctor.Report) {
	printf(w, "GitOps project %s\n", r.Project)
	for _, f := range r.Findings {
		if f.OK {
			printf(w, "✓ %-22s %s\n", f.Check, f.Detail)
			continue
		}
		printf(w, "✗ %-22s %s: %s\n", f.Check, f.Severity, f.Problem)
		if f.Detail != "" {
			printf(w, "  %-22s found: %s\n", "", f.Detail)
		}
		printf(w, "  %-22s fix: %s\n", "", f.Fix)
	}
	if r.Errors == 0 && r.Warnings == 0 {
		printf(w, "all %d checks passed\n", len(r.Findings))
		return
	}
	printf(w, "%s\n", counts(r))
}

func counts(r doctor.Report) string {
	return fmt.Sprintf("%d error(s), %d warning(s)", r.Errors, r.Warnings)
}
