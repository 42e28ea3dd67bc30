package writeback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/lotse/lotse/internal/atomicfile"
	"github.com/lotse/lotse/internal/gitops"
)

// Local edits a checked-out GitOps working tree instead of going through
// GitLab, for teams that push with git or want to look before they push.
type Local struct {
	// Dir is the root of the working tree, where lotse.yaml is.
	Dir string
	// Commit makes a git commit of the values file (with the trailers) after
	// editing it. lotse never pushes.
	Commit bool
}

// Bump writes b.Image into the values file in the working tree, the same
// edit Writer.Bump commits. The stage's promotion does not matter here: the
// file is edited in place, and with Commit committed on the checked-out
// branch. Result.Commit is the new commit's SHA when one was made.
func (l Local) Bump(ctx context.Context, b Bump) (Result, error) {
	data, err := os.ReadFile(filepath.Join(l.Dir, ConfigFile))
	if err != nil {
		return Result{}, fmt.Errorf("read lotse.yaml: %w", err)
	}
	cfg, err := gitops.ParseConfig(data, filepath.Join(l.Dir, ConfigFile))
	if err != nil {
		return Result{}, err
	}
	a, s, err := lookup(cfg, b.App, b.Stage)
	if err != nil {
		return Result{}, err
	}
	if b.SourceProject == "" {
		b.SourceProject = a.SourceProject
	}
	edits, err := a.Edits(b.Image)
	if err != nil {
		return Result{}, err
	}
	res := Result{App: a.Name, Stage: s.Name, Image: b.Image, Path: a.ValuesPath(s.Name), Promotion: s.Promotion}
	file := filepath.Join(l.Dir, filepath.FromSlash(res.Path))
	doc, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("values file %s does not exist; lotse edits existing files only", file)
	}
	if err != nil {
		return res, fmt.Errorf("read values file: %w", err)
	}
	out, changed, err := gitops.SetValues(doc, edits)
	if err != nil {
		return res, fmt.Errorf("edit %s: %w", res.Path, err)
	}
	res.Changed = changed
	if changed {
		if err := atomicfile.Write(file, out); err != nil {
			return res, err
		}
	}
	if !l.Commit {
		return res, nil
	}
	// Commit when the file differs from HEAD: also after an earlier run
	// without --commit edited it.
	if _, err := l.git(ctx, nil, "diff", "--quiet", "HEAD", "--", res.Path); err == nil {
		return res, nil
	}
	subject := fmt.Sprintf("Promote %s to %s: %s", a.Name, s.Name, short(b.Image))
	msg := gitops.CommitMessage(subject, fmt.Sprintf("Set %s in %s.", b.Image, res.Path), gitops.Trailers{
		App: a.Name, Stage: s.Name, Image: b.Image.String(),
		SourceProject: b.SourceProject, SourceCommit: b.SourceCommit, Pipeline: b.Pipeline})
	if _, err := l.git(ctx, nil, "add", "--", res.Path); err != nil {
		return res, err
	}
	if _, err := l.git(ctx, strings.NewReader(msg), "commit", "--quiet", "--no-verify", "-F", "-", "--", res.Path); err != nil {
		return res, err
	}
	sha, err := l.git(ctx, nil, "rev-parse", "HEAD")
	if err != nil {
		return res, err
	}
	res.Changed, res.Commit = true, sha
	res.Branch, _ = l.git(ctx, nil, "rev-parse", "--abbrev-ref", "HEAD")
	return res, nil
}

// git runs git in the working tree and returns its trimmed output.
func (l Local) git(ctx context.Context, stdin *strings.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", l.Dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		return "", fmt.Errorf("git %s: %w: %s", args[0], err, msg)
	}
	return strings.TrimSpace(out.String()), nil
}
