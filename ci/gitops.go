package ci

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/releaseapi"
	"github.com/lotse/lotse/internal/writeback"
)

// gitopsFlags say which GitLab and which GitOps project to write to.
type gitopsFlags struct {
	url     string
	project string
}

func (a *app) addGitOpsFlags(fs *pflag.FlagSet, f *gitopsFlags) {
	fs.StringVar(&f.url, "gitlab-url", "", "GitLab URL (env LOTSE_GITLAB_URL; in CI CI_API_V4_URL)")
	fs.StringVar(&f.project, "gitops-project", a.env.get("LOTSE_GITOPS_PROJECT"), "GitOps project path, like platform/gitops (env LOTSE_GITOPS_PROJECT)")
}

// gitlabClient builds the GitLab client from flags and environment. The
// token is never printed.
func (a *app) gitlabClient(f *gitopsFlags) (*gitlab.Client, error) {
	url := f.url
	for _, k := range []string{"LOTSE_GITLAB_URL", "CI_API_V4_URL", "CI_SERVER_URL"} {
		if url == "" {
			url = a.env.get(k)
		}
	}
	if url == "" {
		return nil, usagef("no GitLab URL: give --gitlab-url or set LOTSE_GITLAB_URL (in GitLab CI, CI_API_V4_URL is used)")
	}
	if f.project == "" {
		return nil, usagef("no GitOps project: give --gitops-project or set LOTSE_GITOPS_PROJECT")
	}
	token := a.env.get("LOTSE_GITLAB_TOKEN")
	if token == "" {
		token = a.env.get("GITLAB_TOKEN")
	}
	if token == "" {
		hint := ""
		if a.env.get("CI_JOB_TOKEN") != "" {
			hint = "; CI_JOB_TOKEN cannot be used: GitLab does not let job tokens commit files or open merge requests"
		}
		return nil, usagef("no GitLab token: set LOTSE_GITLAB_TOKEN to lotse's access token for %s (api scope; the Maintainer role when it commits to the protected default branch)%s", f.project, hint)
	}
	c, err := gitlab.New(url, token, gitlab.WithUserAgent("lotse/"+a.info.Version),
		gitlab.WithHTTPClient(&http.Client{Timeout: 60 * time.Second}))
	if err != nil {
		return nil, usagef("--gitlab-url: %v", err)
	}
	return c, nil
}

// writer opens lotse.yaml of the GitOps project.
func (a *app) writer(ctx context.Context, f *gitopsFlags) (*writeback.Writer, error) {
	c, err := a.gitlabClient(f)
	if err != nil {
		return nil, err
	}
	return writeback.Open(ctx, c, f.project, writeback.Options{})
}

// inputError turns names lotse.yaml does not define into usage errors.
func inputError(err error) error {
	var ne *writeback.NameError
	if errors.As(err, &ne) {
		return &UsageError{Err: err}
	}
	return err
}

func (a *app) bumpCmd() *cobra.Command {
	var (
		gf                          gitopsFlags
		appName, stage, img         string
		sourceProject, sourceCommit string
		local, lotsedURL            string
		commit                      bool
	)
	cmd := &cobra.Command{
		Use:   "bump --app APP --stage STAGE --image REPO@DIGEST",
		Short: "Write an image into a stage of the GitOps repository",
		Long: `Write an image into the Helm values file of APP for STAGE in the GitOps
repository, as lotse.yaml at its root says: a commit to the default branch for
stages with promotion commit; a commit on lotse/APP/STAGE and one merge request
for merge-request stages (auto-merge) and approval stages (for the approvers).
Nothing is committed when the file already holds the image. Only the target
values change; comments, order, quoting and indentation stay.

Concurrent bumps are safe: a bump that finds the file changed re-reads it and
applies its edit again. The number of such retries is printed.

In GitLab CI the source fields default to CI_PROJECT_PATH, CI_COMMIT_SHA and
CI_PIPELINE_URL, --image to LOTSE_IMAGE (written by lotse release --dotenv),
and the GitLab URL to CI_API_V4_URL. The token comes from LOTSE_GITLAB_TOKEN
(or GITLAB_TOKEN); CI_JOB_TOKEN cannot commit.

--local DIR edits a checked-out GitOps working tree instead, and --commit
commits the change there with git (never pushes).

With --url or LOTSE_URL (lotsed's URL), lotse hands the release to lotsed
instead and needs no GitLab token: it posts the app, the image and the stage
to lotsed's POST /api/v1/releases with the job's GitLab CI ID token from
LOTSE_ID_TOKEN (declare id_tokens: LOTSE_ID_TOKEN: aud: <lotsed's URL> in the
job). lotsed checks that the token is of the app's sourceProject on a
protected ref, runs the stage's gates and commits as lotse's user; the source
project, commit and pipeline come from the token. STAGE must be the app's
first stage. Exit 3 when a gate of the stage refused the image, 1 for every
other refusal (invalid token, wrong project, unprotected ref, unknown app)
and failure.`,
		Example: `  lotse bump --app shop --stage dev --image harbor.example.com/team/shop@sha256:... --gitops-project platform/gitops
  lotse bump --app shop --stage dev --image $LOTSE_IMAGE --local ../gitops --commit`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if img == "" {
				img = a.env.get("LOTSE_IMAGE")
			}
			if appName == "" || stage == "" || img == "" {
				return usagef("--app, --stage and --image (or LOTSE_IMAGE) are required")
			}
			ref, err := gitops.ParseImageRef(img)
			if err != nil {
				return usagef("--image: %v", err)
			}
			b := writeback.Bump{App: appName, Stage: stage, Image: ref, SourceProject: sourceProject,
				SourceCommit: sourceCommit, Pipeline: a.env.get("CI_PIPELINE_URL")}
			ctx := cmd.Context()
			if lotsedURL != "" && local == "" {
				if commit {
					return usagef("--commit needs --local DIR")
				}
				return a.handToLotsed(ctx, lotsedURL, releaseapi.Request{App: appName, Image: ref.String(), Stage: stage, SourceCommit: sourceCommit})
			}
			if local != "" {
				res, err := writeback.Local{Dir: local, Commit: commit}.Bump(ctx, b)
				if err != nil {
					return inputError(err)
				}
				a.report(ctx, "bump", res)
				return nil
			}
			if commit {
				return usagef("--commit needs --local DIR")
			}
			w, err := a.writer(ctx, &gf)
			if err != nil {
				return err
			}
			res, err := w.Bump(ctx, b)
			if err != nil {
				return inputError(err)
			}
			a.report(ctx, "bump", res)
			return nil
		},
	}
	fs := cmd.Flags()
	a.addGitOpsFlags(fs, &gf)
	fs.StringVar(&appName, "app", "", "app name in lotse.yaml")
	fs.StringVar(&stage, "stage", "", "stage name in lotse.yaml")
	fs.StringVar(&img, "image", "", "image REPO[:TAG]@sha256:... (env LOTSE_IMAGE)")
	fs.StringVar(&sourceProject, "source-project", a.env.get("CI_PROJECT_PATH"), "project that built the image (in CI: CI_PROJECT_PATH; default: the app's sourceProject)")
	fs.StringVar(&sourceCommit, "source-commit", a.env.get("CI_COMMIT_SHA"), "commit the image was built from (in CI: CI_COMMIT_SHA)")
	fs.StringVar(&local, "local", "", "edit the GitOps working tree in DIR instead of going through GitLab")
	fs.BoolVar(&commit, "commit", false, "with --local: git commit the change (no push)")
	fs.StringVar(&lotsedURL, "url", a.env.get("LOTSE_URL"), "lotsed's URL: hand the release to lotsed with the ID token in LOTSE_ID_TOKEN instead of writing to GitLab (env LOTSE_URL)")
	return cmd
}

// handToLotsed posts a release to lotsed with the job's ID token and prints
// what lotsed did.
func (a *app) handToLotsed(ctx context.Context, url string, req releaseapi.Request) error {
	token := a.env.get("LOTSE_ID_TOKEN")
	if token == "" {
		return usagef("LOTSE_URL is set, so lotse hands the release to lotsed, which needs the job's ID token in LOTSE_ID_TOKEN: declare id_tokens: {LOTSE_ID_TOKEN: {aud: %s}} in the job", url)
	}
	c := &releaseapi.Client{URL: url, Token: token}
	res, err := c.Release(ctx, req)
	var re *releaseapi.Error
	switch {
	case errors.As(err, &re) && re.Status == http.StatusUnprocessableEntity:
		for _, r := range re.Reasons {
			printf(a.stdout, "gate failed: %s\n", r)
		}
		return &GateError{Reason: fmt.Sprintf("lotsed refused %s for %s %s: %s", req.Image, req.App, req.Stage, strings.Join(re.Reasons, "; "))}
	case err != nil:
		return err
	}
	what := fmt.Sprintf("already at %s in %s, nothing to commit", res.Image, res.Path)
	if res.Changed {
		what = fmt.Sprintf("lotsed committed %.12s to %s (%s)", res.Commit, res.Branch, res.Path)
	}
	if mr := res.MergeRequest; mr != nil {
		what += fmt.Sprintf("; merge request !%d %s %s", mr.IID, mr.State, mr.WebURL)
	}
	gates := make([]string, 0, len(res.Gates))
	for _, g := range res.Gates {
		gates = append(gates, g.Name+": "+g.Reason)
	}
	if len(gates) == 0 {
		gates = append(gates, "none")
	}
	printf(a.stdout, "%s %s: %s\nsource %s@%s, pipeline %s\ngates: %s\n", res.App, res.Stage, what,
		res.SourceProject, res.SourceCommit, res.Pipeline, strings.Join(gates, "; "))
	a.log.InfoContext(ctx, "bump", "app", res.App, "stage", res.Stage, "image", res.Image, "changed", res.Changed, "commit", res.Commit, "via", "lotsed")
	return nil
}

func (a *app) promoteCmd() *cobra.Command {
	var (
		gf          gitopsFlags
		appName, to string
	)
	cmd := &cobra.Command{
		Use:   "promote --app APP --to STAGE",
		Short: "Move the image of the previous stage into STAGE",
		Long: `Read the image that the stage before STAGE runs (on the default branch of the
GitOps repository) and write it into STAGE, through STAGE's promotion: usually
a merge request from lotse/APP/STAGE. The commit records the source project and
commit of the image, found in the history of the previous stage.`,
		Example: `  lotse promote --app shop --to production --gitops-project platform/gitops`,
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if appName == "" || to == "" {
				return usagef("--app and --to are required")
			}
			ctx := cmd.Context()
			w, err := a.writer(ctx, &gf)
			if err != nil {
				return err
			}
			res, err := w.Promote(ctx, appName, to, a.env.get("CI_PIPELINE_URL"))
			if err != nil {
				return inputError(err)
			}
			a.report(ctx, "promote", res)
			return nil
		},
	}
	a.addGitOpsFlags(cmd.Flags(), &gf)
	cmd.Flags().StringVar(&appName, "app", "", "app name in lotse.yaml")
	cmd.Flags().StringVar(&to, "to", "", "stage to promote into")
	return cmd
}

func (a *app) rollbackCmd() *cobra.Command {
	var (
		gf             gitopsFlags
		appName, stage string
		to             string
		steps          int
	)
	cmd := &cobra.Command{
		Use:   "rollback --app APP --stage STAGE [--to DIGEST | --steps N]",
		Short: "Open a merge request back to an earlier image of a stage",
		Long: `Find the images STAGE ran in the Git history of its values file and open a
merge request (label rollback) that sets an earlier one: --to DIGEST (it must
be in the history) or the N-th previous distinct image (--steps, default 1).

Rollbacks always go through a merge request on lotse/APP/STAGE, also for
commit stages, so that each one leaves a reviewable record; it replaces a
promotion of the stage still waiting there. lotse asks GitLab to auto-merge it,
except for approval stages, which wait for their approvers.`,
		Example: `  lotse rollback --app shop --stage production
  lotse rollback --app shop --stage production --to sha256:4f1c...`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if appName == "" || stage == "" {
				return usagef("--app and --stage are required")
			}
			if to != "" && cmd.Flags().Changed("steps") {
				return usagef("give --to or --steps, not both")
			}
			if steps < 1 {
				return usagef("--steps must be at least 1")
			}
			if to != "" {
				steps = 0
				d := to[strings.LastIndexByte(to, '@')+1:]
				if !strings.HasPrefix(d, "sha256:") || len(d) != 71 || strings.Trim(d[7:], "0123456789abcdef") != "" {
					return usagef("--to: bad digest %q: want sha256: and 64 hex characters", to)
				}
			}
			ctx := cmd.Context()
			w, err := a.writer(ctx, &gf)
			if err != nil {
				return err
			}
			res, err := w.Rollback(ctx, writeback.Rollback{App: appName, Stage: stage, To: to, Steps: steps, Pipeline: a.env.get("CI_PIPELINE_URL")})
			if err != nil {
				return inputError(err)
			}
			a.report(ctx, "rollback", res)
			return nil
		},
	}
	a.addGitOpsFlags(cmd.Flags(), &gf)
	cmd.Flags().StringVar(&appName, "app", "", "app name in lotse.yaml")
	cmd.Flags().StringVar(&stage, "stage", "", "stage to roll back")
	cmd.Flags().StringVar(&to, "to", "", "digest (or image reference) to go back to")
	cmd.Flags().IntVar(&steps, "steps", 1, "go back this many distinct images")
	return cmd
}

// report prints what a write did: one line, then the retries.
func (a *app) report(ctx context.Context, op string, r writeback.Result) {
	what := ""
	switch {
	case !r.Changed && r.MR == nil:
		what = fmt.Sprintf("already at %s in %s, nothing to commit", r.Image, r.Path)
	case !r.Changed:
		what = fmt.Sprintf("already at %s on %s", r.Image, r.Branch)
	case r.Commit == "":
		what = fmt.Sprintf("wrote %s into %s, not committed", r.Image, r.Path)
	default:
		what = fmt.Sprintf("committed %.12s to %s (%s)", r.Commit, r.Branch, r.Path)
	}
	if r.MR != nil {
		verb := "updated"
		if r.MRCreated {
			verb = "opened"
		}
		state := r.MR.State
		switch {
		case r.MR.State == "merged":
		case r.MR.AutoMerge:
			state = "auto-merge when checks pass"
		case r.Promotion == gitops.PromotionApproval:
			state = "waiting for approval"
		}
		what += fmt.Sprintf("; merge request !%d %s, %s", r.MR.IID, verb, state)
		if r.MR.WebURL != "" {
			what += " " + r.MR.WebURL
		}
	}
	printf(a.stdout, "%s %s: %s\nretries %d\n", r.App, r.Stage, what, r.Retries)
	attrs := []any{"app", r.App, "stage", r.Stage, "image", r.Image.String(), "changed", r.Changed, "commit", r.Commit, "retries", r.Retries}
	if r.MR != nil {
		attrs = append(attrs, "mr", r.MR.IID)
	}
	a.log.InfoContext(ctx, op, attrs...)
}
