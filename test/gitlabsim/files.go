package gitlabsim

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"path"
	"strconv"
)

type apiFile struct {
	FileName        string `json:"file_name"`
	FilePath        string `json:"file_path"`
	Size            int64  `json:"size"`
	Encoding        string `json:"encoding"`
	Content         string `json:"content"`
	ContentSHA256   string `json:"content_sha256"`
	Ref             string `json:"ref"`
	BlobID          string `json:"blob_id"`
	CommitID        string `json:"commit_id"`
	LastCommitID    string `json:"last_commit_id"`
	ExecuteFilemode bool   `json:"execute_filemode"`
}

// readFile resolves ref and path; it answers 400/404 itself and returns ok=false on failure.
func (s *Sim) readFile(c *call, p *project, ref string) (f apiFile, content []byte, ok bool) {
	ctx := c.r.Context()
	filePath := c.r.PathValue("path")
	commit, err := p.repo.resolve(ctx, ref)
	if err != nil {
		c.notFound("Commit")
		return f, nil, false
	}
	e, err := p.repo.entry(ctx, commit, filePath)
	if err != nil {
		c.notFound("File")
		return f, nil, false
	}
	content, err = p.repo.blob(ctx, e.Blob)
	if err != nil {
		c.message(http.StatusInternalServerError, "500 Internal Server Error")
		return f, nil, false
	}
	last, _ := p.repo.lastCommitFor(ctx, commit, filePath)
	sum := sha256.Sum256(content)
	f = apiFile{
		FileName: path.Base(filePath), FilePath: filePath, Size: e.Size, Encoding: "base64",
		ContentSHA256: hex.EncodeToString(sum[:]), Ref: ref, BlobID: e.Blob, CommitID: commit,
		LastCommitID: last, ExecuteFilemode: e.Mode == "100755",
	}
	h := c.w.Header()
	h.Set("X-Gitlab-Blob-Id", f.BlobID)
	h.Set("X-Gitlab-Commit-Id", f.CommitID)
	h.Set("X-Gitlab-Content-Sha256", f.ContentSHA256)
	h.Set("X-Gitlab-Encoding", f.Encoding)
	h.Set("X-Gitlab-File-Name", f.FileName)
	h.Set("X-Gitlab-File-Path", f.FilePath)
	h.Set("X-Gitlab-Last-Commit-Id", f.LastCommitID)
	h.Set("X-Gitlab-Ref", f.Ref)
	h.Set("X-Gitlab-Size", strconv.FormatInt(f.Size, 10))
	h.Set("X-Gitlab-Execute-Filemode", strconv.FormatBool(f.ExecuteFilemode))
	return f, content, true
}

// getFile serves GET and HEAD /projects/:id/repository/files/:file_path?ref=.
func (s *Sim) getFile(c *call) {
	if !c.requireParams("ref") {
		return
	}
	p := c.repoProject()
	if p == nil {
		return
	}
	p.mu.Unlock() // git reads need no lock: refs move atomically
	f, content, ok := s.readFile(c, p, c.params.str("ref"))
	if !ok {
		return
	}
	if c.r.Method == http.MethodHead {
		c.w.WriteHeader(http.StatusOK)
		return
	}
	f.Content = base64.StdEncoding.EncodeToString(content)
	c.json(http.StatusOK, f)
}

// getRawFile serves GET /projects/:id/repository/files/:file_path/raw (ref defaults to HEAD).
func (s *Sim) getRawFile(c *call) {
	p := c.repoProject()
	if p == nil {
		return
	}
	ref := c.params.str("ref")
	if ref == "" {
		ref = p.defaultBranch
	}
	p.mu.Unlock() // git reads need no lock: refs move atomically
	_, content, ok := s.readFile(c, p, ref)
	if !ok {
		return
	}
	c.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(content)
}
