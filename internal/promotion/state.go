package promotion

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// MaxHistory is how many earlier deployments a stage remembers for rollback.
const MaxHistory = 20

// maxNotes is how many ChatOps note ids the state remembers to drop
// re-delivered commands.
const maxNotes = 64

// User is a GitLab user. People are compared by ID, which their owners
// cannot change; the username is only shown.
type User struct {
	ID       int64  `json:"id"`
	Username string `json:"username,omitempty"`
}

// UnmarshalJSON reads a user, or a bare username as lotse stored people
// before it compared them by ID: such a user has no ID and is nobody's
// equal (approvals by name do not count; authors by name are read again).
func (u *User) UnmarshalJSON(b []byte) error {
	var name string
	if json.Unmarshal(b, &name) == nil {
		*u = User{Username: name}
		return nil
	}
	type plain User
	return json.Unmarshal(b, (*plain)(u))
}

// Is reports whether u and o are the same known user.
func (u User) Is(o User) bool { return u.ID != 0 && u.ID == o.ID }

// String is how a user is shown: @username, or #ID without one.
func (u User) String() string {
	if u.Username != "" {
		return "@" + u.Username
	}
	if u.ID != 0 {
		return fmt.Sprintf("#%d", u.ID)
	}
	return "lotse"
}

// State is everything the engine remembers about one app. It is plain data:
// the service stores it as JSON between events, and a JSON round trip gives
// an equal State. Times are kept in UTC.
type State struct {
	App    string                 `json:"app"`
	Seq    uint64                 `json:"seq"`              // incremented by every change; for optimistic locking in the store
	LastID uint64                 `json:"lastID,omitempty"` // the last promotion id handed out
	Stages map[string]*StageState `json:"stages,omitempty"` // by stage name
	// Notes are the ids of the last ChatOps notes handled, oldest first, so a
	// re-delivered note is not answered twice.
	Notes []int64 `json:"notes,omitempty"`
	// Frozen are the stop-the-line freezes operators set (ChatOps or the
	// API), by stage ("" for every stage).
	Frozen map[string]*StopTheLine `json:"frozen,omitempty"`
}

// StopTheLine is a freeze an operator set until an operator lifts it.
type StopTheLine struct {
	Reason string    `json:"reason"`
	By     User      `json:"by"`
	At     time.Time `json:"at,omitzero"`
}

// StageState is what runs in one stage and what is on its way there.
type StageState struct {
	Current *Deployment  `json:"current,omitempty"`
	History []Deployment `json:"history,omitempty"` // earlier deployments, oldest first, at most MaxHistory
	// Promotion is the latest promotion into this stage, running or finished.
	Promotion *Promotion `json:"promotion,omitempty"`
	// Previous is the promotion Promotion replaced, so the source MR of a
	// superseded version can still say what became of it.
	Previous *Promotion `json:"previous,omitempty"`
	// OutOfBand is the latest change of the stage on the default branch
	// that did not come from lotse or a known writer; nil once it is
	// accepted or a landing replaced it.
	OutOfBand *OutOfBand `json:"outOfBand,omitempty"`
}

// OutOfBand is a change of a stage's values on the default branch by
// someone other than lotse and its writers, or whose trailers do not match
// what it changed. It is recorded and never promoted onward, unless an
// operator accepts it.
type OutOfBand struct {
	Image         string    `json:"image,omitempty"`
	SourceProject string    `json:"sourceProject,omitempty"`
	SourceCommit  string    `json:"sourceCommit,omitempty"`
	Commit        string    `json:"commit"`
	Pusher        User      `json:"pusher"`
	Reason        string    `json:"reason"`
	At            time.Time `json:"at,omitzero"`
}

// Deployment is one version that landed in a stage.
type Deployment struct {
	Image         string        `json:"image"`
	SourceProject string        `json:"sourceProject,omitempty"`
	SourceCommit  string        `json:"sourceCommit,omitempty"`
	ChangeAuthors []User        `json:"changeAuthors,omitempty"` // sorted by ID
	AuthorsErr    string        `json:"authorsErr,omitempty"`    // why the change's authors could not be read
	Commit        string        `json:"commit,omitempty"`        // the GitOps commit that landed it
	Head          string        `json:"head,omitempty"`          // the default branch's head after that push
	LandedAt      time.Time     `json:"landedAt,omitzero"`
	Health        *HealthStatus `json:"health,omitempty"` // the latest ArgoCD report for this version
	// Sync is where a version that landed in a manual-sync stage is:
	// SyncWaiting (merged, waiting for ArgoCD's sync), SyncRunning or
	// SyncDegraded. Empty in other stages: there it runs once it landed.
	Sync string `json:"sync,omitempty"`
	// Deploy is the status of the version's GitLab deployment the engine
	// last asked for (Deploy action): running, success, failed or
	// canceled. Empty for versions that landed before lotse recorded
	// deployments: they are left alone.
	Deploy string `json:"deploy,omitempty"`
	// Rollback: the version was put back by a rollback.
	Rollback bool `json:"rollback,omitempty"`
}

// The states of a version in a manual-sync stage.
const (
	SyncWaiting  = "waiting-for-sync"
	SyncRunning  = "running"
	SyncDegraded = "degraded"
)

// HealthStatus is the latest ArgoCD report about a deployment.
type HealthStatus struct {
	Healthy bool      `json:"healthy"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at,omitzero"` // when the current health status was first reported
}

// Phase is where a promotion is.
type Phase string

// The phases of a promotion.
const (
	// PhaseChecking: CheckGates was asked; waiting for GatesChecked.
	PhaseChecking Phase = "checking"
	// PhaseWaiting: the checked gates passed; waiting for the soak time and
	// the health report of the previous stage.
	PhaseWaiting Phase = "waiting"
	// PhaseOpening: OpenMR (or Rollback) was asked; waiting for MROpened.
	PhaseOpening Phase = "opening"
	// PhaseAwaitingApproval: the MR of an approval stage waits for approvers.
	PhaseAwaitingApproval Phase = "awaiting-approval"
	// PhaseMerging: MergeMR was asked, or will be again on the next Tick.
	PhaseMerging Phase = "merging"
	// PhaseMerged: the MR is merged; waiting for the commit to land.
	PhaseMerged Phase = "merged"
	// PhaseLanded: the version runs in the stage.
	PhaseLanded Phase = "landed"
	// PhaseBlocked: a gate failed or GitLab refused the merge; terminal until
	// `/lotse retry` or a newer version.
	PhaseBlocked Phase = "blocked"
	// PhaseTampered: someone else pushed to lotse's MR, or the MR is not
	// what lotse wrote; it was closed unmerged. Terminal until an operator's
	// `/lotse retry` opens a clean one, or a newer version.
	PhaseTampered Phase = "tampered"
	// PhaseSuperseded: a newer version took its place.
	PhaseSuperseded Phase = "superseded"
	// PhaseCancelled: the MR was closed.
	PhaseCancelled Phase = "cancelled"
)

// IsTerminal reports whether the promotion stopped: it landed, was blocked,
// superseded or cancelled. Only `/lotse retry` moves a blocked promotion on.
func (ph Phase) IsTerminal() bool {
	switch ph {
	case PhaseLanded, PhaseBlocked, PhaseTampered, PhaseSuperseded, PhaseCancelled:
		return true
	}
	return false
}

// replaceable reports whether a new promotion may take the slot of one in
// this phase without superseding it: it stopped, or its MR is merged and
// only the landing is still to come.
func (ph Phase) replaceable() bool { return ph.IsTerminal() || ph == PhaseMerged }

// Promotion is one version on its way into a stage.
type Promotion struct {
	ID            uint64 `json:"id"`
	Image         string `json:"image"`
	From          string `json:"from,omitempty"` // the previous stage; empty for a rollback
	SourceProject string `json:"sourceProject,omitempty"`
	SourceCommit  string `json:"sourceCommit,omitempty"`
	ChangeAuthors []User `json:"changeAuthors,omitempty"` // sorted by ID
	// AuthorsErr says why the change's authors are not known: nobody's
	// approval counts until they are read.
	AuthorsErr string `json:"authorsErr,omitempty"`
	Rollback   bool   `json:"rollback,omitempty"` // puts an earlier image back; gates are skipped
	// BreakGlass is an operator's reason to merge despite a freeze.
	BreakGlass string `json:"breakGlass,omitempty"`
	Trigger    User   `json:"trigger,omitzero"` // the operator who asked for it; zero: automatic
	Phase      Phase  `json:"phase"`
	// BlockedIn is the phase the promotion was in when it was blocked; retry
	// resumes from there.
	BlockedIn     Phase         `json:"blockedIn,omitempty"`
	Reason        string        `json:"reason,omitempty"` // why it is blocked, cancelled or superseded
	Gates         Gates         `json:"gates"`
	MR            *MergeRequest `json:"mr,omitempty"`
	MergeAttempts int           `json:"mergeAttempts,omitempty"`
	// RetryMerge is set when GitLab answered that mergeability is still
	// being computed: the next Tick asks again.
	RetryMerge bool      `json:"retryMerge,omitempty"`
	Status     string    `json:"status,omitempty"` // the last commit status sent for the source commit
	StartedAt  time.Time `json:"startedAt,omitzero"`
	UpdatedAt  time.Time `json:"updatedAt,omitzero"`
}

// MergeRequest is the GitOps merge request of a promotion.
type MergeRequest struct {
	IID    int  `json:"iid"`
	Author User `json:"author,omitzero"`
	// SHA is lotse's own commit on the MR: the only head it merges.
	SHA       string     `json:"sha,omitempty"`
	Approvers []Approval `json:"approvers,omitempty"` // who approved and did not revoke, by user ID
	OpenedAt  time.Time  `json:"openedAt,omitzero"`   // when lotse learned the MR exists
	MergedAt  time.Time  `json:"mergedAt,omitzero"`   // when lotse learned it was merged
	MergedBy  User       `json:"mergedBy,omitzero"`   // who merged it; zero: unknown
}

// Approval is one approval of an MR and the commit it was given on.
type Approval struct {
	User User   `json:"user"`
	SHA  string `json:"sha,omitempty"` // the MR's head when it was given; empty: unknown
	// At is when lotse learned of it; zero: unknown. Not part of an
	// approval's identity (see sameApproval).
	At time.Time `json:"at,omitzero"`
}

// sameApproval reports whether a and b are the same user's approval of the
// same head.
func sameApproval(a, b Approval) bool { return a.User == b.User && a.SHA == b.SHA }

// GateStatus is the outcome of one gate.
type GateStatus string

// Gate outcomes. The empty status means the stage does not require the gate.
const (
	GateNotRequired GateStatus = ""
	GatePending     GateStatus = "pending"
	GatePassed      GateStatus = "passed"
	GateFailed      GateStatus = "failed"
	GateSkipped     GateStatus = "skipped" // a rollback skips the gates
)

// ok reports whether the gate lets the promotion open or merge an MR.
func (g GateStatus) ok() bool { return g == GateNotRequired || g == GatePassed || g == GateSkipped }

// Gate is one gate of a promotion and why it is where it is.
type Gate struct {
	Status GateStatus `json:"status,omitempty"`
	Reason string     `json:"reason,omitempty"`
}

// Gates are the four gates of a promotion.
type Gates struct {
	Signature Gate `json:"signature,omitzero"`
	Scan      Gate `json:"scan,omitzero"`
	Soak      Gate `json:"soak,omitzero"`
	Health    Gate `json:"health,omitzero"`
}

// Passed reports whether every gate lets the promotion open or merge its MR.
func (g Gates) Passed() bool {
	return g.Signature.Status.ok() && g.Scan.Status.ok() && g.Soak.Status.ok() && g.Health.Status.ok()
}

// Stage returns the state of the stage called name, or nil.
func (s State) Stage(name string) *StageState {
	if s.Stages == nil {
		return nil
	}
	return s.Stages[name]
}

// clone returns a deep copy, so Next never changes the caller's State.
func (s State) clone() State {
	c := s
	c.Notes = slices.Clone(s.Notes)
	if s.Frozen != nil {
		c.Frozen = make(map[string]*StopTheLine, len(s.Frozen))
		for k, v := range s.Frozen {
			f := *v
			c.Frozen[k] = &f
		}
	}
	if s.Stages != nil {
		c.Stages = make(map[string]*StageState, len(s.Stages))
		for k, v := range s.Stages {
			if v == nil {
				continue
			}
			c.Stages[k] = v.clone()
		}
	}
	return c
}

func (st *StageState) clone() *StageState {
	c := &StageState{}
	if st.Current != nil {
		d := st.Current.clone()
		c.Current = &d
	}
	if st.History != nil {
		c.History = make([]Deployment, len(st.History))
		for i, d := range st.History {
			c.History[i] = d.clone()
		}
	}
	c.Promotion = st.Promotion.clone()
	c.Previous = st.Previous.clone()
	if st.OutOfBand != nil {
		o := *st.OutOfBand
		c.OutOfBand = &o
	}
	return c
}

func (pr *Promotion) clone() *Promotion {
	if pr == nil {
		return nil
	}
	c := *pr
	c.ChangeAuthors = slices.Clone(pr.ChangeAuthors)
	if pr.MR != nil {
		mr := *pr.MR
		mr.Approvers = slices.Clone(mr.Approvers)
		c.MR = &mr
	}
	return &c
}

func (d Deployment) clone() Deployment {
	d.ChangeAuthors = slices.Clone(d.ChangeAuthors)
	if d.Health != nil {
		h := *d.Health
		d.Health = &h
	}
	return d
}

// normUsers returns the known users sorted by ID, each once, nil when
// there are none (so a JSON round trip keeps the value equal).
func normUsers(us []User) []User {
	var out []User
	for _, u := range us {
		if u.ID != 0 && !slices.ContainsFunc(out, u.Is) {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		return nil
	}
	slices.SortFunc(out, func(a, b User) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
