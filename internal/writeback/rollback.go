package writeback

import (
	"context"
	"fmt"
	"strings"

	"github.com/lotse/lotse/internal/gitops"
)

// Rollback asks for a stage of an app to go back to an earlier image.
type Rollback struct {
	App, Stage string
	// To is the digest (sha256:...) or reference (repo[:tag]@sha256:...) to
	// go back to; it must be in the history of the stage's values file.
	To string
	// Steps goes back to the Steps-th previous distinct image (when To is
	// empty); 0 means 1.
	Steps    int
	Pipeline string // URL of the pipeline that asks for the rollback
}

// Rollback finds an earlier image of the stage in the Git history of its
// values file on the default branch and writes it back through a merge
// request labelled "rollback", whatever the stage's promotion: a rollback is
// an exception that deserves a reviewable record. The MR uses the stage
// branch, so it replaces a promotion of the stage still waiting there. For
// commit and merge-request stages lotse asks GitLab to auto-merge it; for
// approval stages it waits for the approvers like any promotion.
//
// The trailers of the new commit name the source project and commit that
// built the image gone back to, as found in the history.
func (w *Writer) Rollback(ctx context.Context, r Rollback) (Result, error) {
	a, s, err := lookup(w.cfg, r.App, r.Stage)
	if err != nil {
		return Result{}, err
	}
	if r.To != "" && r.Steps > 0 {
		return Result{}, fmt.Errorf("give either a target image or a number of steps, not both")
	}
	if r.Steps < 0 {
		return Result{}, fmt.Errorf("steps must be at least 1, not %d", r.Steps)
	}
	fc := newFileCache()
	cur, err := w.stageStatus(ctx, a, s, fc)
	if err != nil {
		return Result{}, err
	}
	path := a.ValuesPath(s.Name)
	hist, err := w.history(ctx, fc, a, path)
	if err != nil {
		return Result{}, err
	}
	var pick *version
	if r.To != "" {
		want := r.To
		if i := strings.LastIndexByte(want, '@'); i >= 0 {
			want = want[i+1:]
		}
		if !strings.HasPrefix(want, "sha256:") || len(want) != len("sha256:")+64 {
			return Result{}, fmt.Errorf("bad digest %q: want sha256: and 64 hex characters", r.To)
		}
		for i := range hist {
			if hist[i].deployed && hist[i].image.Digest == want {
				pick = &hist[i]
				break
			}
		}
		if pick == nil {
			return Result{}, fmt.Errorf("app %q stage %s never ran %s: it is not in the last %d commits of %s", a.Name, s.Name, want, len(hist), path)
		}
	} else {
		steps := max(r.Steps, 1)
		seen := map[gitops.ImageRef]bool{cur.Image: true}
		var distinct []*version
		for i := range hist {
			if v := &hist[i]; v.deployed && !seen[v.image] {
				seen[v.image] = true
				distinct = append(distinct, v)
			}
		}
		if steps > len(distinct) {
			return Result{}, fmt.Errorf("app %q stage %s: there are only %d earlier image(s) in the last %d commits of %s, cannot go back %d",
				a.Name, s.Name, len(distinct), len(hist), path, steps)
		}
		pick = distinct[steps-1]
	}
	if pick.image.Digest == "" {
		return Result{}, fmt.Errorf("app %q stage %s: the earlier image %s has no digest; lotse rolls back to digests only", a.Name, s.Name, pick.image)
	}
	t := gitops.Trailers{App: a.Name, Stage: s.Name, Image: pick.image.String(), Pipeline: r.Pipeline}
	if old, ok := gitops.ParseTrailers(pick.commit.Message); ok && sameImage(old.Image, pick.image) {
		t.SourceProject, t.SourceCommit = old.SourceProject, old.SourceCommit
	}
	from := "nothing"
	if cur.Deployed {
		from = cur.Image.String()
	}
	t.Rollback = from
	c := change{
		app: a, stage: s, image: pick.image, trailers: t,
		subject: fmt.Sprintf("Roll back %s in %s to %s", a.Name, s.Name, short(pick.image)),
		body:    fmt.Sprintf("Rollback from %s to the image of commit %.12s.", from, pick.commit.SHA),
		viaMR:   true,
		labels:  append(append([]string{}, s.Labels...), RollbackLabel),
		merge:   s.Promotion != gitops.PromotionApproval,
	}
	return w.apply(ctx, c)
}
