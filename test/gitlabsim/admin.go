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
	s.admin("POST "+a+"/users", adminCall(http.StatusCreated, s.adminCreateUser))
	s.admin("PUT "+a+"/users/{uid}", adminCall(http.StatusNoContent, s.adminRenameUser))
	s.admin("POST "+proj+"/fork", adminCall(http.StatusCreated, s.adminFork))
	s.admin("POST "+proj+"/merge_requests", adminCall(http.StatusCreated, s.adminCreateMR))
	s.admin("POST "+proj+"/deployments", adminCall(http.StatusCreated, s.adminCreateDeployment))
	s.admin("POST "+a+"/projects", adminCall(http.StatusCreated, s.adminCreateProject))
	s.admin("PUT "+proj, adminCall(http.StatusNoContent, s.adminUpdateProject))
	s.admin("GET "+proj+"/repo", adminCall(http.StatusOK, s.adminRepo))
	s.admin("POST "+proj+"/members", adminCall(http.StatusNoContent, s.adminAddMember))
	s.admin("POST "+proj+"/job_tokens", adminCall(http.StatusCreated, s.adminJobToken))
	s.admin("POST "+proj+"/id_tokens", adminCall(http.StatusCreated, s.adminIDToken))
	s.admin("POST "+proj+"/commits", adminCall(http.StatusCreated, s.adminCommit))
	s.admin("POST "+proj+"/hooks", adminCall(http.StatusCreated, s.adminAddHook))
	s.admin("POST "+proj+"/pipelines", adminCall(http.StatusCreated, s.adminCreatePipeline))
	s.admin("PUT "+proj+"/pipelines/{pid}", adminCall(http.StatusNoContent, s.adminSetPipeline))
	s.admin("GET "+mr, adminCall(http.StatusOK, s.adminGetMR))
	s.admin("POST "+mr+"/approve", adminCall(http.StatusNoContent, s.adminApprove))
	s.admin("POST "+mr+"/unapprove", adminCall(http.StatusNoContent, s.adminUnapprove))
	s.admin("POST "+mr+"/merge", adminCall(http.StatusNoContent, s.adminMerge))
	s.admin("POST "+mr+"/notes", adminCall(http.StatusCreated, s.adminNote))
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
	s.admin("PUT "+a+"/faults", adminCall(http.StatusNoContent, s.adminFaults))
	s.admin("DELETE "+a+"/faults", func(w http.ResponseWriter, r *http.Request) {
		s.Faults()
		s.SetWebhookFaults(WebhookFaults{})
		w.WriteHeader(http.StatusNoContent)
	})
	s.admin("PUT "+a+"/checking", adminCall(http.StatusNoContent, s.adminChecking))
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

// adminCall adapts fn to an admin handler: the JSON body (it may be empty)
// decodes into a Req, fn's result is answered with status, or with 204 No
// Content when it is nil, and its error goes through adminError.
func adminCall[Req any](status int, fn func(r *http.Request, req Req) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if !decode(w, r, &req) {
			return
		}
		out, err := fn(r, req)
		switch {
		case err != nil:
			adminError(w, err)
		case out == nil:
			w.WriteHeader(http.StatusNoContent)
		default:
			writeJSON(w, status, out)
		}
	}
}

// pathInt is the integer path value name (0 when it is not one: the
// simulator then answers 404 for the object).
func pathInt(r *http.Request, name string) int {
	n, _ := strconv.Atoi(r.PathValue(name))
	return n
}

type asUser struct {
	Username string `json:"username"`
}

func (s *Sim) adminCreateUser(_ *http.Request, spec UserSpec) (any, error) {
	return s.CreateUser(spec)
}

func (s *Sim) adminRenameUser(r *http.Request, req asUser) (any, error) {
	return nil, s.RenameUser(pathInt(r, "uid"), req.Username)
}

func (s *Sim) adminFork(r *http.Request, spec ForkSpec) (any, error) {
	return s.ForkProject(r.PathValue("id"), spec)
}

type mrAsUser struct {
	Username string `json:"username"`
	MergeRequestSpec
}

func (s *Sim) adminCreateMR(r *http.Request, req mrAsUser) (any, error) {
	iid, err := s.CreateMergeRequest(r.PathValue("id"), req.Username, req.MergeRequestSpec)
	return map[string]any{"iid": iid}, err
}

func (s *Sim) adminCreateDeployment(r *http.Request, spec DeploymentSpec) (any, error) {
	id, err := s.CreateDeployment(r.PathValue("id"), spec)
	return map[string]any{"id": id}, err
}

func (s *Sim) adminCreateProject(_ *http.Request, spec ProjectSpec) (any, error) {
	return s.CreateProject(spec)
}

type projectUpdate struct {
	Settings  *ProjectSettings  `json:"settings"`
	Protected []ProtectedBranch `json:"protected_branches"`
	Checking  *Checking         `json:"checking"`
}

func (s *Sim) adminUpdateProject(r *http.Request, req projectUpdate) (any, error) {
	return nil, s.UpdateProject(r.PathValue("id"), req.Settings, req.Protected, req.Checking)
}

func (s *Sim) adminRepo(r *http.Request, _ struct{}) (any, error) {
	dir := s.Repo(r.PathValue("id"))
	if dir == "" {
		return nil, ErrUnknown
	}
	return map[string]any{"path": dir}, nil
}

func (s *Sim) adminAddMember(r *http.Request, m Member) (any, error) {
	return nil, s.AddMember(r.PathValue("id"), m.Username, m.Role)
}

func (s *Sim) adminJobToken(r *http.Request, req asUser) (any, error) {
	tok, err := s.JobToken(r.PathValue("id"), req.Username)
	return map[string]any{"token": tok}, err
}

type commitRequest struct {
	Username string `json:"username"`
	CommitSpec
}

func (s *Sim) adminCommit(r *http.Request, req commitRequest) (any, error) {
	sha, err := s.Commit(r.PathValue("id"), req.Username, req.CommitSpec)
	return map[string]any{"id": sha}, err
}

func (s *Sim) adminAddHook(r *http.Request, spec HookSpec) (any, error) {
	id, err := s.AddHook(r.PathValue("id"), spec)
	return map[string]any{"id": id}, err
}

func (s *Sim) adminCreatePipeline(r *http.Request, spec PipelineSpec) (any, error) {
	id, err := s.CreatePipeline(r.PathValue("id"), spec)
	return map[string]any{"id": id}, err
}

func (s *Sim) adminSetPipeline(r *http.Request, req struct {
	Status string `json:"status"`
}) (any, error) {
	return nil, s.SetPipelineStatus(r.PathValue("id"), pathInt(r, "pid"), req.Status)
}

func (s *Sim) adminGetMR(r *http.Request, _ struct{}) (any, error) {
	return s.MergeRequest(r.PathValue("id"), pathInt(r, "iid"))
}

func (s *Sim) adminApprove(r *http.Request, req asUser) (any, error) {
	return nil, s.Approve(r.PathValue("id"), pathInt(r, "iid"), req.Username)
}

func (s *Sim) adminUnapprove(r *http.Request, req asUser) (any, error) {
	return nil, s.Unapprove(r.PathValue("id"), pathInt(r, "iid"), req.Username)
}

type mergeAsUser struct {
	Username string `json:"username"`
	MergeSpec
}

func (s *Sim) adminMerge(r *http.Request, req mergeAsUser) (any, error) {
	return nil, s.Merge(r.PathValue("id"), pathInt(r, "iid"), req.Username, req.MergeSpec)
}

type noteRequest struct {
	Username string `json:"username"`
	Body     string `json:"body"`
}

func (s *Sim) adminNote(r *http.Request, req noteRequest) (any, error) {
	id, err := s.CreateNote(r.PathValue("id"), pathInt(r, "iid"), req.Username, req.Body)
	return map[string]any{"id": id}, err
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

type faultsRequest struct {
	REST     []Fault       `json:"rest"`
	Webhooks WebhookFaults `json:"webhooks"`
}

func (s *Sim) adminFaults(_ *http.Request, req faultsRequest) (any, error) {
	s.Faults(req.REST...)
	s.SetWebhookFaults(req.Webhooks)
	return nil, nil
}

func (s *Sim) adminChecking(_ *http.Request, c Checking) (any, error) {
	s.SetChecking(c)
	return nil, nil
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
