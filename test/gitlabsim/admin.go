package gitlabsim

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The admin API under /-/sim lets tests and demos drive the simulator over
// HTTP. It is guarded by the admin token (PRIVATE-TOKEN or Authorization: Bearer).
// README.md documents it.

func (s *Sim) adminRoutes() {
	const a = "/-/sim"
	const proj = a + "/projects/{id}"
	const mr = proj + "/merge_requests/{iid}"
	s.mux.HandleFunc("GET "+a+"/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "version": s.version})
	})
	s.admin("POST "+a+"/users", s.adminCreateUser)
	s.admin("POST "+a+"/projects", s.adminCreateProject)
	s.admin("PUT "+proj, s.adminUpdateProject)
	s.admin("GET "+proj+"/repo", s.adminRepo)
	s.admin("POST "+proj+"/members", s.adminAddMember)
	s.admin("POST "+proj+"/job_tokens", s.adminJobToken)
	s.admin("POST "+proj+"/commits", s.adminCommit)
	s.admin("POST "+proj+"/hooks", s.adminAddHook)
	s.admin("POST "+proj+"/pipelines", s.adminCreatePipeline)
	s.admin("PUT "+proj+"/pipelines/{pid}", s.adminSetPipeline)
	s.admin("GET "+mr, s.adminGetMR)
	s.admin("POST "+mr+"/approve", s.adminApprove)
	s.admin("POST "+mr+"/unapprove", s.adminUnapprove)
	s.admin("POST "+mr+"/merge", s.adminMerge)
	s.admin("POST "+mr+"/notes", s.adminNote)
	s.admin("GET "+a+"/events", s.adminEvents)
	s.admin("DELETE "+a+"/events", func(w http.ResponseWriter, r *http.Request) {
		s.ClearEvents()
		w.WriteHeader(http.StatusNoContent)
	})
	s.admin("POST "+a+"/events/{n}/resend", s.adminResend)
	s.admin("GET "+a+"/requests", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, nonNil(s.Requests()))
	})
	s.admin("DELETE "+a+"/requests", func(w http.ResponseWriter, r *http.Request) {
		s.ClearRequests()
		w.WriteHeader(http.StatusNoContent)
	})
	s.admin("PUT "+a+"/faults", s.adminFaults)
	s.admin("DELETE "+a+"/faults", func(w http.ResponseWriter, r *http.Request) {
		s.Faults()
		s.SetWebhookFaults(WebhookFaults{})
		w.WriteHeader(http.StatusNoContent)
	})
	s.admin("PUT "+a+"/checking", s.adminChecking)
}

func nonNil[T any](a []T) []T {
	if a == nil {
		return []T{}
	}
	return a
}

func (s *Sim) admin(pattern string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("PRIVATE-TOKEN")
		if a := r.Header.Get("Authorization"); tok == "" && len(a) > 7 && strings.EqualFold(a[:7], "Bearer ") {
			tok = strings.TrimSpace(a[7:])
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(s.adminToken)) != 1 {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "401 Unauthorized"})
			return
		}
		h(w, r)
	})
}

// decode reads a JSON body into v; it answers 400 and returns false on failure.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err == nil && len(strings.TrimSpace(string(body))) == 0 {
		return true
	}
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "invalid JSON body: " + err.Error()})
		return false
	}
	return true
}

// adminError maps Go API errors to HTTP answers.
func adminError(w http.ResponseWriter, err error) {
	var aerr *apiError
	switch {
	case errors.As(err, &aerr):
		writeJSON(w, aerr.Status, aerr.Body)
	case errors.Is(err, ErrUnknown):
		writeJSON(w, http.StatusNotFound, map[string]any{"message": err.Error()})
	case errors.Is(err, ErrExists):
		writeJSON(w, http.StatusConflict, map[string]any{"message": err.Error()})
	default:
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": err.Error()})
	}
}

func (s *Sim) adminCreateUser(w http.ResponseWriter, r *http.Request) {
	var spec UserSpec
	if !decode(w, r, &spec) {
		return
	}
	u, err := s.CreateUser(spec)
	if err != nil {
		adminError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, u)
}

func (s *Sim) adminCreateProject(w http.ResponseWriter, r *http.Request) {
	var spec ProjectSpec
	if !decode(w, r, &spec) {
		return
	}
	p, err := s.CreateProject(spec)
	if err != nil {
		adminError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, p)
}

func (s *Sim) adminUpdateProject(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Settings  *ProjectSettings  `json:"settings"`
		Protected []ProtectedBranch `json:"protected_branches"`
		Checking  *Checking         `json:"checking"`
	}
	if !decode(w, r, &req) {
		return
	}
	if err := s.UpdateProject(r.PathValue("id"), req.Settings, req.Protected, req.Checking); err != nil {
		adminError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) adminRepo(w http.ResponseWriter, r *http.Request) {
	dir := s.Repo(r.PathValue("id"))
	if dir == "" {
		adminError(w, ErrUnknown)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"path": dir})
}

func (s *Sim) adminAddMember(w http.ResponseWriter, r *http.Request) {
	var m Member
	if !decode(w, r, &m) {
		return
	}
	if err := s.AddMember(r.PathValue("id"), m.Username, m.Role); err != nil {
		adminError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) adminJobToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
	}
	if !decode(w, r, &req) {
		return
	}
	tok, err := s.JobToken(r.PathValue("id"), req.Username)
	if err != nil {
		adminError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"token": tok})
}

func (s *Sim) adminCommit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		CommitSpec
	}
	if !decode(w, r, &req) {
		return
	}
	sha, err := s.Commit(r.PathValue("id"), req.Username, req.CommitSpec)
	if err != nil {
		adminError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": sha})
}

func (s *Sim) adminAddHook(w http.ResponseWriter, r *http.Request) {
	var spec HookSpec
	if !decode(w, r, &spec) {
		return
	}
	id, err := s.AddHook(r.PathValue("id"), spec)
	if err != nil {
		adminError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": id})
}

func (s *Sim) adminCreatePipeline(w http.ResponseWriter, r *http.Request) {
	var spec PipelineSpec
	if !decode(w, r, &spec) {
		return
	}
	id, err := s.CreatePipeline(r.PathValue("id"), spec)
	if err != nil {
		adminError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": id})
}

func (s *Sim) adminSetPipeline(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Status string `json:"status"`
	}
	if !decode(w, r, &req) {
		return
	}
	id, _ := strconv.Atoi(r.PathValue("pid"))
	if err := s.SetPipelineStatus(r.PathValue("id"), id, req.Status); err != nil {
		adminError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) adminGetMR(w http.ResponseWriter, r *http.Request) {
	iid, _ := strconv.Atoi(r.PathValue("iid"))
	mr, err := s.MergeRequest(r.PathValue("id"), iid)
	if err != nil {
		adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, mr)
}

type asUser struct {
	Username string `json:"username"`
}

func (s *Sim) adminApprove(w http.ResponseWriter, r *http.Request) {
	var req asUser
	if !decode(w, r, &req) {
		return
	}
	iid, _ := strconv.Atoi(r.PathValue("iid"))
	if err := s.Approve(r.PathValue("id"), iid, req.Username); err != nil {
		adminError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) adminUnapprove(w http.ResponseWriter, r *http.Request) {
	var req asUser
	if !decode(w, r, &req) {
		return
	}
	iid, _ := strconv.Atoi(r.PathValue("iid"))
	if err := s.Unapprove(r.PathValue("id"), iid, req.Username); err != nil {
		adminError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) adminMerge(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		MergeSpec
	}
	if !decode(w, r, &req) {
		return
	}
	iid, _ := strconv.Atoi(r.PathValue("iid"))
	if err := s.Merge(r.PathValue("id"), iid, req.Username, req.MergeSpec); err != nil {
		adminError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) adminNote(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		Body     string `json:"body"`
	}
	if !decode(w, r, &req) {
		return
	}
	iid, _ := strconv.Atoi(r.PathValue("iid"))
	id, err := s.CreateNote(r.PathValue("id"), iid, req.Username, req.Body)
	if err != nil {
		adminError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": id})
}

func (s *Sim) adminEvents(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("wait") == "true" {
		ctx := r.Context()
		if d, err := time.ParseDuration(r.URL.Query().Get("timeout")); err == nil {
			var cancel func()
			ctx, cancel = contextWithTimeout(ctx, d)
			defer cancel()
		}
		if err := s.WaitDeliveries(ctx); err != nil {
			writeJSON(w, http.StatusGatewayTimeout, map[string]any{"message": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, nonNil(s.Events()))
}

func (s *Sim) adminResend(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err == nil {
		err = s.Resend(n)
	}
	if err != nil {
		adminError(w, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *Sim) adminFaults(w http.ResponseWriter, r *http.Request) {
	var req struct {
		REST     []Fault       `json:"rest"`
		Webhooks WebhookFaults `json:"webhooks"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.Faults(req.REST...)
	s.SetWebhookFaults(req.Webhooks)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) adminChecking(w http.ResponseWriter, r *http.Request) {
	var c Checking
	if !decode(w, r, &c) {
		return
	}
	s.SetChecking(c)
	w.WriteHeader(http.StatusNoContent)
}

// UnmarshalJSON accepts {"reads": 1, "duration": "500ms"}.
func (c *Checking) UnmarshalJSON(b []byte) error {
	var aux struct {
		Reads    int    `json:"reads"`
		Duration string `json:"duration"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	c.Reads = aux.Reads
	c.Duration = 0
	if aux.Duration != "" {
		d, err := time.ParseDuration(aux.Duration)
		if err != nil {
			return err
		}
		c.Duration = d
	}
	return nil
}

// MarshalJSON writes the duration as a Go duration string.
func (c Checking) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"reads": c.Reads, "duration": c.Duration.String()})
}

// UnmarshalJSON accepts "delay" as a Go duration string ("250ms").
func (f *WebhookFaults) UnmarshalJSON(b []byte) error {
	var aux struct {
		DuplicateEvery int     `json:"duplicate_every"`
		DuplicateRate  float64 `json:"duplicate_rate"`
		Delay          string  `json:"delay"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*f = WebhookFaults{DuplicateEvery: aux.DuplicateEvery, DuplicateRate: aux.DuplicateRate}
	if aux.Delay != "" {
		d, err := time.ParseDuration(aux.Delay)
		if err != nil {
			return err
		}
		f.Delay = d
	}
	return nil
}

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}
