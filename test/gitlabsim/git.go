package gitlabsim

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// zeroSHA is the all-zero object name GitLab uses for "no commit" in push events.
const zeroSHA = "0000000000000000000000000000000000000000"

// errGitNotFound reports that a ref, commit or path does not exist.
var errGitNotFound = errors.New("git: not found")

// repo is a bare git repository on disk, driven through the git binary.
// It holds no lock of its own: callers serialise writes with the project mutex.
type repo struct {
	dir string

	// memo caches answers about immutable objects (keyed by full SHAs), so
	// repeated conflict checks do not spawn git again.
	memoMu sync.Mutex
	memo   map[string]any
}

// isSHA reports whether s is a full hex object name (immutable, so cacheable).
func isSHA(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (r *repo) cached(key string) (any, bool) {
	r.memoMu.Lock()
	defer r.memoMu.Unlock()
	v, ok := r.memo[key]
	return v, ok
}

func (r *repo) remember(key string, v any) {
	r.memoMu.Lock()
	defer r.memoMu.Unlock()
	if r.memo == nil || len(r.memo) > 50000 {
		r.memo = map[string]any{}
	}
	r.memo[key] = v
}

// gitIdent is a commit author or committer with its time.
type gitIdent struct {
	Name  string
	Email string
	When  time.Time
}

// gitCommit is a parsed commit.
type gitCommit struct {
	SHA       string
	Parents   []string
	Author    gitIdent
	Committer gitIdent
	Message   string
	Trailers  map[string]string
}

// Title is the first line of the message.
func (c gitCommit) Title() string {
	t, _, _ := strings.Cut(c.Message, "\n")
	return t
}

// fileChange is one path changed by a commit, as git diff-tree reports it.
type fileChange struct {
	Status string // A, M, D
	Path   string
}

// treeEntry is a file in a tree.
type treeEntry struct {
	Mode string
	Blob string
	Size int64
}

func initRepo(ctx context.Context, dir, defaultBranch string) (*repo, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create repo dir: %w", err)
	}
	r := &repo{dir: dir}
	if _, err := r.git(ctx, nil, nil, "init", "--bare", "--quiet", "--initial-branch="+defaultBranch, dir); err != nil {
		return nil, err
	}
	return r, nil
}

// git runs git against the repository and returns its standard output.
func (r *repo) git(ctx context.Context, env []string, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(),
		"GIT_DIR="+r.dir,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
	)
	cmd.Env = append(cmd.Env, env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), &gitError{args: args, stderr: strings.TrimSpace(errb.String()), err: err}
	}
	return out.Bytes(), nil
}

// gitError is a failed git invocation.
type gitError struct {
	args   []string
	stderr string
	err    error
}

func (e *gitError) Error() string {
	return fmt.Sprintf("git %s: %v: %s", strings.Join(e.args, " "), e.err, e.stderr)
}

func (e *gitError) Unwrap() error { return e.err }

// exitCode returns the exit code of a failed git command, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// resolve returns the commit SHA a ref (branch, tag, SHA, HEAD) names.
func (r *repo) resolve(ctx context.Context, ref string) (string, error) {
	if ref == "" || strings.HasPrefix(ref, "-") {
		return "", errGitNotFound
	}
	if isSHA(ref) {
		if v, ok := r.cached("commit:" + ref); ok && v.(bool) {
			return ref, nil
		}
	} else if sha := r.looseRef("refs/heads/" + ref); sha != "" && r.looseRef("refs/tags/"+ref) == "" && !fileExists(filepath.Join(r.dir, "packed-refs")) {
		return sha, nil // a branch name, not shadowed by a tag: no need to spawn git
	}
	out, err := r.git(ctx, nil, nil, "rev-parse", "--verify", "--quiet", "--end-of-options", ref+"^{commit}")
	if err != nil {
		return "", errGitNotFound
	}
	sha := strings.TrimSpace(string(out))
	r.remember("commit:"+sha, true)
	return sha, nil
}

// looseRef reads a loose ref file (the simulator never packs refs); "" if absent.
func (r *repo) looseRef(name string) string {
	if !validBranchName(strings.TrimPrefix(name, "refs/heads/")) {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(r.dir, filepath.FromSlash(name)))
	if err != nil {
		return ""
	}
	sha := strings.TrimSpace(string(b))
	if !isSHA(sha) {
		return ""
	}
	return sha
}

// branchHead returns the SHA of refs/heads/<branch>.
func (r *repo) branchHead(ctx context.Context, branch string) (string, error) {
	if sha := r.looseRef("refs/heads/" + branch); sha != "" {
		return sha, nil
	}
	out, err := r.git(ctx, nil, nil, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch)
	if err != nil {
		return "", errGitNotFound
	}
	return strings.TrimSpace(string(out)), nil
}

// branches lists branch names and heads.
func (r *repo) branches(ctx context.Context) (map[string]string, error) {
	out, err := r.git(ctx, nil, nil, "for-each-ref", "--format=%(objectname) %(refname:lstrip=2)", "refs/heads/")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if sha, name, ok := strings.Cut(line, " "); ok {
			m[name] = sha
		}
	}
	return m, nil
}

// updateRef moves ref from old to new atomically (old "" means must not exist; new "" deletes).
func (r *repo) updateRef(ctx context.Context, ref, newSHA, oldSHA string) error {
	if oldSHA == "" {
		oldSHA = zeroSHA
	}
	var err error
	if newSHA == "" {
		_, err = r.git(ctx, nil, nil, "update-ref", "-d", ref, oldSHA)
	} else {
		_, err = r.git(ctx, nil, nil, "update-ref", ref, newSHA, oldSHA)
	}
	if err != nil {
		return fmt.Errorf("update %s: %w", ref, err)
	}
	return nil
}

// entry returns the tree entry of path at commit.
func (r *repo) entry(ctx context.Context, commit, path string) (treeEntry, error) {
	key := "entry:" + commit + ":" + path
	if isSHA(commit) {
		if v, ok := r.cached(key); ok {
			if e, ok := v.(treeEntry); ok {
				return e, nil
			}
			return treeEntry{}, errGitNotFound
		}
	}
	e, err := r.lsTree(ctx, commit, path)
	if isSHA(commit) && (err == nil || errors.Is(err, errGitNotFound)) {
		if err == nil {
			r.remember(key, e)
		} else {
			r.remember(key, false)
		}
	}
	return e, err
}

func (r *repo) lsTree(ctx context.Context, commit, path string) (treeEntry, error) {
	out, err := r.git(ctx, nil, nil, "ls-tree", "-l", "--full-tree", commit, "--", path)
	if err != nil {
		return treeEntry{}, err
	}
	line := strings.TrimSpace(string(out))
	if line == "" {
		return treeEntry{}, errGitNotFound
	}
	meta, name, _ := strings.Cut(line, "\t")
	if name != path {
		return treeEntry{}, errGitNotFound
	}
	f := strings.Fields(meta)
	if len(f) < 4 || f[1] != "blob" {
		return treeEntry{}, errGitNotFound
	}
	size, _ := strconv.ParseInt(f[3], 10, 64)
	return treeEntry{Mode: f[0], Blob: f[2], Size: size}, nil
}

// blob returns the content of a blob (small blobs are cached: objects are immutable).
func (r *repo) blob(ctx context.Context, sha string) ([]byte, error) {
	if v, ok := r.cached("blob:" + sha); ok {
		return v.([]byte), nil
	}
	b, err := r.git(ctx, nil, nil, "cat-file", "blob", sha)
	if err == nil && len(b) < 1<<20 {
		r.remember("blob:"+sha, b)
	}
	return b, err
}

// lastCommitFor returns the last commit reachable from ref that touched path, or errGitNotFound.
func (r *repo) lastCommitFor(ctx context.Context, ref, path string) (string, error) {
	key := "last:" + ref + ":" + path
	if isSHA(ref) {
		if v, ok := r.cached(key); ok {
			if v.(string) == "" {
				return "", errGitNotFound
			}
			return v.(string), nil
		}
	}
	out, err := r.git(ctx, nil, nil, "log", "-1", "--format=%H", ref, "--", path)
	if err != nil {
		return "", errGitNotFound
	}
	sha := strings.TrimSpace(string(out))
	if isSHA(ref) {
		r.remember(key, sha)
	}
	if sha == "" {
		return "", errGitNotFound
	}
	return sha, nil
}

const logFormat = "%H%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%(trailers:unfold,only)%x00%B%x1e"

// logQuery selects commits for log.
type logQuery struct {
	Ref         string
	Path        string
	Skip, Limit int
	Since       time.Time
	Until       time.Time
	FirstParent bool
	Exclude     string // commits reachable from this ref are left out
}

// log lists commits newest first.
func (r *repo) log(ctx context.Context, q logQuery) ([]gitCommit, error) {
	args := []string{"log", "--format=" + logFormat}
	if q.Skip > 0 {
		args = append(args, "--skip="+strconv.Itoa(q.Skip))
	}
	if q.Limit > 0 {
		args = append(args, "--max-count="+strconv.Itoa(q.Limit))
	}
	if !q.Since.IsZero() {
		args = append(args, "--since="+q.Since.Format(time.RFC3339))
	}
	if !q.Until.IsZero() {
		args = append(args, "--until="+q.Until.Format(time.RFC3339))
	}
	if q.FirstParent {
		args = append(args, "--first-parent")
	}
	args = append(args, q.Ref)
	if q.Exclude != "" {
		args = append(args, "^"+q.Exclude)
	}
	args = append(args, "--")
	if q.Path != "" {
		args = append(args, q.Path)
	}
	out, err := r.git(ctx, nil, nil, args...)
	if err != nil {
		return nil, err
	}
	return parseLog(out), nil
}

func parseLog(out []byte) []gitCommit {
	var cs []gitCommit
	for rec := range strings.SplitSeq(string(out), "\x1e") {
		rec = strings.TrimLeft(rec, "\n")
		if rec == "" {
			continue
		}
		f := strings.SplitN(rec, "\x00", 10)
		if len(f) < 10 {
			continue
		}
		at, _ := time.Parse(time.RFC3339, f[4])
		ct, _ := time.Parse(time.RFC3339, f[7])
		c := gitCommit{
			SHA:       f[0],
			Parents:   strings.Fields(f[1]),
			Author:    gitIdent{Name: f[2], Email: f[3], When: at},
			Committer: gitIdent{Name: f[5], Email: f[6], When: ct},
			Trailers:  parseTrailers(f[8]),
			Message:   strings.TrimRight(f[9], "\n"),
		}
		if c.Parents == nil {
			c.Parents = []string{}
		}
		cs = append(cs, c)
	}
	return cs
}

func parseTrailers(s string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) != "" {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// commit returns one parsed commit.
func (r *repo) commit(ctx context.Context, sha string) (gitCommit, error) {
	out, err := r.git(ctx, nil, nil, "log", "-1", "--no-walk", "--format="+logFormat, "--end-of-options", sha)
	if err != nil {
		return gitCommit{}, errGitNotFound
	}
	cs := parseLog(out)
	if len(cs) != 1 {
		return gitCommit{}, errGitNotFound
	}
	return cs[0], nil
}

// changes lists the paths a commit changed against its first parent.
func (r *repo) changes(ctx context.Context, sha string) ([]fileChange, error) {
	out, err := r.git(ctx, nil, nil, "diff-tree", "-r", "--root", "--no-commit-id", "--no-renames", "--name-status", "-z", "-m", "--first-parent", sha)
	if err != nil {
		return nil, err
	}
	return parseNameStatus(out), nil
}

// diff lists paths changed between two commits.
func (r *repo) diff(ctx context.Context, from, to string) ([]fileChange, error) {
	out, err := r.git(ctx, nil, nil, "diff-tree", "-r", "--no-renames", "--name-status", "-z", from, to)
	if err != nil {
		return nil, err
	}
	return parseNameStatus(out), nil
}

func parseNameStatus(out []byte) []fileChange {
	f := strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	var cs []fileChange
	for i := 0; i+1 < len(f); i += 2 {
		cs = append(cs, fileChange{Status: f[i][:1], Path: f[i+1]})
	}
	return cs
}

// numstat returns additions and deletions of a commit against its first parent.
func (r *repo) numstat(ctx context.Context, sha string) (add, del int) {
	out, err := r.git(ctx, nil, nil, "diff-tree", "-r", "--root", "--no-commit-id", "--numstat", "-m", "--first-parent", sha)
	if err != nil {
		return 0, 0
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, _ := strconv.Atoi(f[0])
		d, _ := strconv.Atoi(f[1])
		add += a
		del += d
	}
	return add, del
}

// isAncestor reports whether a is an ancestor of (or equal to) b.
func (r *repo) isAncestor(ctx context.Context, a, b string) bool {
	_, err := r.git(ctx, nil, nil, "merge-base", "--is-ancestor", a, b)
	return err == nil
}

// mergeBase returns the best common ancestor of a and b.
func (r *repo) mergeBase(ctx context.Context, a, b string) (string, error) {
	out, err := r.git(ctx, nil, nil, "merge-base", a, b)
	if err != nil {
		return "", errGitNotFound
	}
	return strings.TrimSpace(string(out)), nil
}

// mergeTree merges theirs into ours without touching refs. It returns the
// resulting tree, or conflict=true.
func (r *repo) mergeTree(ctx context.Context, ours, theirs string) (tree string, conflict bool, err error) {
	out, err := r.git(ctx, nil, nil, "merge-tree", "--write-tree", "--no-messages", "--allow-unrelated-histories", ours, theirs)
	if err != nil {
		if exitCode(err) == 1 {
			return "", true, nil
		}
		return "", false, err
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), false, nil
}

// treeOf returns the tree of a commit.
func (r *repo) treeOf(ctx context.Context, commit string) (string, error) {
	out, err := r.git(ctx, nil, nil, "rev-parse", commit+"^{tree}")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// commitTree writes a commit object.
func (r *repo) commitTree(ctx context.Context, tree string, parents []string, msg string, author, committer gitIdent) (string, error) {
	args := []string{"commit-tree", tree}
	for _, p := range parents {
		args = append(args, "-p", p)
	}
	env := []string{
		"GIT_AUTHOR_NAME=" + author.Name, "GIT_AUTHOR_EMAIL=" + author.Email,
		"GIT_AUTHOR_DATE=" + author.When.Format(time.RFC3339),
		"GIT_COMMITTER_NAME=" + committer.Name, "GIT_COMMITTER_EMAIL=" + committer.Email,
		"GIT_COMMITTER_DATE=" + committer.When.Format(time.RFC3339),
	}
	out, err := r.git(ctx, env, []byte(msg), args...)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// treeEdit is one change applied to a tree by buildTree.
type treeEdit struct {
	Path    string
	Delete  bool
	Content []byte // nil with Delete=false and Mode set: keep Blob
	Blob    string
	Mode    string
}

// buildTree applies edits to the tree of base ("" for an empty tree) and writes the new tree.
func (r *repo) buildTree(ctx context.Context, base string, edits []treeEdit) (string, error) {
	idx, err := os.CreateTemp("", "gitlabsim-index-*")
	if err != nil {
		return "", fmt.Errorf("temp index: %w", err)
	}
	idxPath := idx.Name()
	idx.Close()
	os.Remove(idxPath) // git wants to create it itself
	defer os.Remove(idxPath)
	env := []string{"GIT_INDEX_FILE=" + idxPath}
	if base != "" {
		if _, err := r.git(ctx, env, nil, "read-tree", base); err != nil {
			return "", err
		}
	} else {
		if _, err := r.git(ctx, env, nil, "read-tree", "--empty"); err != nil {
			return "", err
		}
	}
	var info bytes.Buffer
	for _, e := range edits {
		if e.Delete {
			// mode 0 with the null sha removes the path.
			fmt.Fprintf(&info, "0 %s\t%s\n", zeroSHA, e.Path)
			continue
		}
		blob := e.Blob
		if e.Content != nil || blob == "" {
			var err error
			if blob, err = r.writeBlob(e.Content); err != nil {
				return "", err
			}
		}
		mode := e.Mode
		if mode == "" {
			mode = "100644"
		}
		fmt.Fprintf(&info, "%s %s\t%s\n", mode, blob, e.Path)
	}
	if info.Len() > 0 {
		if _, err := r.git(ctx, env, info.Bytes(), "update-index", "--index-info"); err != nil {
			return "", err
		}
	}
	out, err := r.git(ctx, env, nil, "write-tree")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// writeBlob stores content as a loose blob object, like git hash-object -w,
// without spawning git (this is the hot path of every commit).
func (r *repo) writeBlob(content []byte) (string, error) {
	hdr := fmt.Sprintf("blob %d\x00", len(content))
	h := sha1.New()
	h.Write([]byte(hdr))
	h.Write(content)
	sha := hex.EncodeToString(h.Sum(nil))
	dir := filepath.Join(r.dir, "objects", sha[:2])
	path := filepath.Join(dir, sha[2:])
	if _, err := os.Stat(path); err == nil {
		return sha, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write blob: %w", err)
	}
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	zw.Write([]byte(hdr))
	zw.Write(content)
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("write blob: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "tmp_obj_")
	if err != nil {
		return "", fmt.Errorf("write blob: %w", err)
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", fmt.Errorf("write blob: %w", err)
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("write blob: %w", err)
	}
	return sha, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// repoDir is where a project's repository lives.
func repoDir(root string, id int) string {
	return filepath.Join(root, "repositories", strconv.Itoa(id)+".git")
}
