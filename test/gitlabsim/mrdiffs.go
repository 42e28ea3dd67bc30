package gitlabsim

import (
	"context"
	"net/http"
	"strings"
)

// listMRCommits serves GET /projects/:id/merge_requests/:iid/commits: the
// commits of the MR's source branch not on its target, newest first (for a
// merged MR: as they were at the merge). Commit authors are names and emails
// only: GitLab's commit entity carries no user id.
func (s *Sim) listMRCommits(c *call, p *project) {
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	ctx := c.r.Context()
	var cs []gitCommit
	for _, sha := range mr.commits {
		if cm, err := p.repo.commit(ctx, sha); err == nil {
			cs = append(cs, cm)
		}
	}
	lo, hi := c.paginate(len(cs))
	out := []apiCommit{}
	for _, cm := range cs[lo:hi] {
		out = append(out, s.commitJSON(ctx, p, cm, c.base, false))
	}
	c.json(http.StatusOK, out)
}

type apiDiff struct {
	OldPath       string `json:"old_path"`
	NewPath       string `json:"new_path"`
	AMode         string `json:"a_mode"`
	BMode         string `json:"b_mode"`
	Diff          string `json:"diff"`
	NewFile       bool   `json:"new_file"`
	RenamedFile   bool   `json:"renamed_file"`
	DeletedFile   bool   `json:"deleted_file"`
	GeneratedFile bool   `json:"generated_file"`
}

// listMRDiffs serves GET /projects/:id/merge_requests/:iid/diffs (GitLab
// 15.7+, the successor of the deprecated /changes): the diff between the
// merge base and the source head, one entry per file, paginated.
func (s *Sim) listMRDiffs(c *call, p *project) {
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	var ds []apiDiff
	if mr.BaseSHA != "" && mr.SHA != "" {
		var err error
		ds, err = p.repo.fileDiffs(c.r.Context(), mr.BaseSHA, mr.SHA)
		if err != nil {
			c.message(http.StatusInternalServerError, "500 Internal Server Error")
			return
		}
	}
	lo, hi := c.paginate(len(ds))
	out := append([]apiDiff{}, ds[lo:hi]...)
	c.json(http.StatusOK, out)
}

// fileDiffs returns the per-file diffs from..to with rename detection, in
// GitLab's shape (the diff text starts at the first hunk header).
func (r *repo) fileDiffs(ctx context.Context, from, to string) ([]apiDiff, error) {
	raw, err := r.git(ctx, nil, nil, "diff-tree", "-r", "-z", "--find-renames", "--raw", "--no-commit-id", from, to)
	if err != nil {
		return nil, err
	}
	patch, err := r.git(ctx, nil, nil, "diff-tree", "-r", "-p", "--find-renames", "--no-color", "--no-commit-id", from, to)
	if err != nil {
		return nil, err
	}
	var out []apiDiff
	f := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	for i := 0; i < len(f); {
		meta := strings.Fields(strings.TrimPrefix(f[i], ":"))
		if len(meta) < 5 || i+1 >= len(f) {
			break
		}
		d := apiDiff{AMode: meta[0], BMode: meta[1], OldPath: f[i+1], NewPath: f[i+1]}
		i += 2
		switch meta[4][:1] {
		case "A":
			d.NewFile, d.AMode = true, "0"
		case "D":
			d.DeletedFile, d.BMode = true, "0"
		case "R", "C":
			if i < len(f) {
				d.NewPath = f[i]
				i++
			}
			d.RenamedFile = meta[4][:1] == "R"
		}
		out = append(out, d)
	}
	// The patch lists files in the same order, each starting with "diff --git".
	chunks := strings.Split(string(patch), "\ndiff --git ")
	for k := range out {
		if k >= len(chunks) {
			break
		}
		body := chunks[k]
		j := strings.Index("\n"+body, "\n@@")
		if j < 0 {
			continue // binary or mode-only change: no text diff
		}
		body = body[j:]
		if !strings.HasSuffix(body, "\n") {
			body += "\n"
		}
		out[k].Diff = body
	}
	return out, nil
}
