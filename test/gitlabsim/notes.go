package gitlabsim

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// note is a comment or system note on a merge request.
type note struct {
	ID        int
	Body      string
	AuthorID  int
	System    bool
	Internal  bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// maxNoteLength is GitLab's limit on a note body.
const maxNoteLength = 1_000_000

func (s *Sim) addSystemNote(p *project, mr *mergeRequest, u *user, body string) {
	now := s.now()
	uid := 0
	if u != nil {
		uid = u.ID
	}
	mr.notes = append(mr.notes, &note{ID: s.newID("notes"), Body: body, AuthorID: uid, System: true, CreatedAt: now, UpdatedAt: now})
}

type apiNote struct {
	ID           int      `json:"id"`
	Type         *string  `json:"type"`
	Body         string   `json:"body"`
	Attachment   *string  `json:"attachment"`
	Author       apiUser  `json:"author"`
	CreatedAt    *apiTime `json:"created_at"`
	UpdatedAt    *apiTime `json:"updated_at"`
	System       bool     `json:"system"`
	NoteableID   int      `json:"noteable_id"`
	NoteableType string   `json:"noteable_type"`
	ProjectID    int      `json:"project_id"`
	NoteableIID  int      `json:"noteable_iid"`
	Resolvable   bool     `json:"resolvable"`
	Confidential bool     `json:"confidential"`
	Internal     bool     `json:"internal"`
	Imported     bool     `json:"imported"`
	ImportedFrom string   `json:"imported_from"`
}

func (s *Sim) noteJSON(p *project, mr *mergeRequest, n *note, base string) apiNote {
	return apiNote{
		ID: n.ID, Body: n.Body, Author: basicUser(s.userByID(n.AuthorID), base),
		CreatedAt: tptr(n.CreatedAt), UpdatedAt: tptr(n.UpdatedAt), System: n.System,
		NoteableID: mr.ID, NoteableType: "MergeRequest", ProjectID: p.ID, NoteableIID: mr.IID,
		Confidential: n.Internal, Internal: n.Internal, ImportedFrom: "none",
	}
}

// listNotes serves GET .../merge_requests/:iid/notes (sort desc by created_at by default).
func (s *Sim) listNotes(c *call, p *project) {
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	var sel []*note
	switch c.params.str("activity_filter") {
	case "only_comments":
		for _, n := range mr.notes {
			if !n.System {
				sel = append(sel, n)
			}
		}
	case "only_activity":
		for _, n := range mr.notes {
			if n.System {
				sel = append(sel, n)
			}
		}
	default:
		sel = append(sel, mr.notes...)
	}
	sortListed(c, sel, func(n *note) (time.Time, time.Time, int) { return n.CreatedAt, n.UpdatedAt, n.ID })
	lo, hi := c.paginate(len(sel))
	out := []apiNote{}
	for _, n := range sel[lo:hi] {
		out = append(out, s.noteJSON(p, mr, n, c.base))
	}
	c.json(http.StatusOK, out)
}

func (c *call) noteParam(mr *mergeRequest) *note {
	id, err := strconv.Atoi(c.r.PathValue("note_id"))
	if err == nil {
		for _, n := range mr.notes {
			if n.ID == id {
				return n
			}
		}
	}
	c.notFound("Note")
	return nil
}

// getNote serves GET .../merge_requests/:iid/notes/:note_id.
func (s *Sim) getNote(c *call, p *project) {
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	n := c.noteParam(mr)
	if n == nil {
		return
	}
	c.json(http.StatusOK, s.noteJSON(p, mr, n, c.base))
}

// createNote serves POST .../merge_requests/:iid/notes.
func (s *Sim) createNote(c *call) {
	if !c.requireParams("body") {
		return
	}
	p := c.repoProject()
	if p == nil {
		return
	}
	defer p.mu.Unlock()
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	body := c.params.str("body")
	if aerr := validNoteBody(body); aerr != nil {
		c.fail(aerr)
		return
	}
	if p.role(c.user) < RoleGuest && p.visibility == "private" {
		c.forbidden("")
		return
	}
	now := s.now()
	internal := c.params.boolOr("internal", c.params.boolOr("confidential", false))
	n := &note{ID: s.newID("notes"), Body: body, AuthorID: c.user.ID, Internal: internal, CreatedAt: now, UpdatedAt: now}
	mr.notes = append(mr.notes, n)
	s.emitNote(c.r.Context(), p, mr, n, c.user, "create")
	c.json(http.StatusCreated, s.noteJSON(p, mr, n, c.base))
}

func validNoteBody(body string) *apiError {
	if strings.TrimSpace(body) == "" {
		return errMsg(http.StatusBadRequest, map[string]any{"note": []string{"can't be blank"}})
	}
	if len([]rune(body)) > maxNoteLength {
		return errMsg(http.StatusBadRequest, fmt.Sprintf("Note {:note=>[\"is too long (maximum is %d characters)\"]}", maxNoteLength))
	}
	return nil
}

// updateNote serves PUT .../merge_requests/:iid/notes/:note_id (author only).
func (s *Sim) updateNote(c *call, p *project) {
	mr := c.mrParam(p)
	if mr == nil {
		return
	}
	n := c.noteParam(mr)
	if n == nil {
		return
	}
	if n.AuthorID != c.user.ID || n.System {
		c.forbidden("")
		return
	}
	if !c.params.has("body") {
		c.missing("body")
		return
	}
	body := c.params.str("body")
	if aerr := validNoteBody(body); aerr != nil {
		c.fail(aerr)
		return
	}
	if body != n.Body {
		n.Body, n.UpdatedAt = body, s.now()
		s.emitNote(c.r.Context(), p, mr, n, c.user, "update")
	}
	c.json(http.StatusOK, s.noteJSON(p, mr, n, c.base))
}

// CreateNote adds a note to an MR as username (emits a Note Hook).
func (s *Sim) CreateNote(projectRef string, iid int, username, body string) (int, error) {
	p, mr, u, err := s.lookupMR(projectRef, iid, username)
	if err != nil {
		return 0, err
	}
	defer p.mu.Unlock()
	if aerr := validNoteBody(body); aerr != nil {
		return 0, aerr
	}
	now := s.now()
	n := &note{ID: s.newID("notes"), Body: body, AuthorID: u.ID, CreatedAt: now, UpdatedAt: now}
	mr.notes = append(mr.notes, n)
	s.emitNote(context.Background(), p, mr, n, u, "create")
	return n.ID, nil
}
