package writeback

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lotse/lotse/internal/gitlab"
	"github.com/lotse/lotse/internal/gitops"
)

// StageStatus is what one stage of one app runs, as the default branch of
// the GitOps repository says.
type StageStatus struct {
	App, Stage string
	Path       string // values file
	Deployed   bool   // the values file holds an image for the app
	Image      gitops.ImageRef
	// Since is when the image came into the values file: the date of the
	// newest commit that changed the app's image to this one. Zero when not
	// found within Options.HistoryLimit commits.
	Since time.Time
	// Commit is that GitOps commit.
	Commit string
	// SourceProject, SourceCommit and Pipeline come from its lotse trailers.
	SourceProject, SourceCommit, Pipeline string
}

// version is the image a values file held for an app at one commit.
type version struct {
	commit   gitlab.Commit
	image    gitops.ImageRef
	deployed bool
}

// fileCache shares file reads at fixed commits within one call: apps that
// share a values file read the same versions.
type fileCache struct {
	mu    sync.Mutex
	files map[string][]byte
	hist  map[string][]gitlab.Commit
}

func newFileCache() *fileCache {
	return &fileCache{files: map[string][]byte{}, hist: map[string][]gitlab.Commit{}}
}

func (w *Writer) fileAt(ctx context.Context, fc *fileCache, path, sha string) ([]byte, error) {
	key := path + "\x00" + sha
	fc.mu.Lock()
	b, ok := fc.files[key]
	fc.mu.Unlock()
	if ok {
		return b, nil
	}
	f, err := w.gl.File(ctx, w.project, path, sha)
	if err != nil {
		return nil, fmt.Errorf("read %s at %.12s: %w", path, sha, err)
	}
	fc.mu.Lock()
	fc.files[key] = f.Content
	fc.mu.Unlock()
	return f.Content, nil
}

// history returns the app's image at each commit of the default branch that
// touched path, newest first, up to Options.HistoryLimit commits. A commit
// at which the file does not parse is skipped.
func (w *Writer) history(ctx context.Context, fc *fileCache, a *gitops.App, path string) ([]version, error) {
	fc.mu.Lock()
	commits, ok := fc.hist[path]
	fc.mu.Unlock()
	if !ok {
		var err error
		commits, err = w.gl.FileHistory(ctx, w.project, path, w.cfg.GitLab.DefaultBranch, w.opts.HistoryLimit)
		if err != nil {
			return nil, fmt.Errorf("read the history of %s: %w", path, err)
		}
		fc.mu.Lock()
		fc.hist[path] = commits
		fc.mu.Unlock()
	}
	out := make([]version, 0, len(commits))
	for _, c := range commits {
		doc, err := w.fileAt(ctx, fc, path, c.SHA)
		if errors.Is(err, gitlab.ErrNotFound) {
			continue // the commit deleted or moved the file
		}
		if err != nil {
			return nil, err
		}
		img, ok, err := a.CurrentImage(doc)
		if err != nil {
			continue
		}
		out = append(out, version{commit: c, image: img, deployed: ok})
	}
	return out, nil
}

// Status reports, for each app (or only app, when not empty) and each of its
// stages, the image the default branch holds, since when, and where it came
// from.
func (w *Writer) Status(ctx context.Context, app string) ([]StageStatus, error) {
	apps := w.cfg.Apps
	if app != "" {
		a, err := w.cfg.App(app)
		if err != nil {
			return nil, &NameError{err}
		}
		apps = []gitops.App{*a}
	}
	fc := newFileCache()
	var out []StageStatus
	for i := range apps {
		a := &apps[i]
		stages, err := w.cfg.StagesFor(a.Name)
		if err != nil {
			return nil, err
		}
		for _, s := range stages {
			st, err := w.stageStatus(ctx, a, s, fc)
			if err != nil {
				return nil, err
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// stageStatus reads one stage of one app.
func (w *Writer) stageStatus(ctx context.Context, a *gitops.App, s *gitops.Stage, fc *fileCache) (StageStatus, error) {
	st := StageStatus{App: a.Name, Stage: s.Name, Path: a.ValuesPath(s.Name)}
	head, err := w.fileAt(ctx, fc, st.Path, w.cfg.GitLab.DefaultBranch)
	if errors.Is(err, gitlab.ErrNotFound) {
		return st, nil // no values file yet: not deployed
	}
	if err != nil {
		return st, err
	}
	st.Image, st.Deployed, err = a.CurrentImage(head)
	if err != nil {
		return st, fmt.Errorf("%s: %w", st.Path, err)
	}
	if !st.Deployed {
		return st, nil
	}
	hist, err := w.history(ctx, fc, a, st.Path)
	if err != nil {
		return st, err
	}
	// The run of newest versions that hold the current image; its oldest
	// commit brought the image in.
	n := 0
	for n < len(hist) && hist[n].deployed && hist[n].image == st.Image {
		n++
	}
	if n == 0 {
		return st, nil
	}
	if n < len(hist) || len(hist) < w.opts.HistoryLimit {
		in := hist[n-1].commit
		st.Since, st.Commit = in.CommittedAt, in.SHA
	}
	// The source: the lotse trailers of the newest commit in the run that
	// wrote this image for this app and stage.
	for _, v := range hist[:n] {
		if t, ok := gitops.ParseTrailers(v.commit.Message); ok && t.App == a.Name && t.Stage == s.Name && sameImage(t.Image, st.Image) {
			st.SourceProject, st.SourceCommit, st.Pipeline = t.SourceProject, t.SourceCommit, t.Pipeline
			break
		}
	}
	return st, nil
}

// sameImage compares a trailer's image with one read from a values file,
// which may lack the tag or the digest.
func sameImage(trailer string, img gitops.ImageRef) bool {
	ref, err := gitops.ParseImageRef(trailer)
	if err != nil {
		return trailer == img.String()
	}
	return ref.Repository == img.Repository && (img.Digest == "" || ref.Digest == img.Digest) && (img.Tag == "" || ref.Tag == img.Tag)
}
