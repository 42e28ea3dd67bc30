package promotion

import "time"

// Action is something the service must do. The concrete types are the
// structs of this file.
type Action interface {
	action()
}

// OpenMR asks the service to write Image into the stage's values file in a
// fresh MR: branch lotse/<app>/<stage> started anew from the default branch,
// one commit of lotse's with trailers naming SourceProject and SourceCommit,
// and a new MR of lotse's (open MRs of others on the branch are closed).
// The service reports it with MROpened.
type OpenMR struct {
	Stage         string
	Image         string
	SourceProject string
	SourceCommit  string
}

// Rollback asks the service to open a fresh MR of the stage's branch with an
// earlier image, as OpenMR does, then to report it with MROpened.
type Rollback struct {
	Stage         string
	Image         string
	SourceProject string
	SourceCommit  string
}

// MergeMR asks the service to merge the MR with head SHA and to report a
// MergeResult. Before it merges, the service checks that the MR is lotse's
// own, its only commit is SHA and it changes nothing but the stage's values
// file; otherwise it reports MergeTampered.
type MergeMR struct {
	Stage   string
	IID     int
	SHA     string // lotse's commit: the only head merged
	Attempt int    // 1, 2, ...; echoed in MergeResult so a re-delivered answer is recognised
	// Pipeline: merge only when the latest pipeline GitLab ran for SHA
	// (on a push or for the MR, not one posted from outside) succeeded.
	Pipeline bool
}

// Reconcile asks the service to read the promotion's MR back from GitLab
// (its state, head and approvals) and to report what the webhooks should
// have said: MRMerged, MRClosed, MRUpdated, MRApproved, MRUnapproved. It
// is asked on every tick, so a promotion whose webhooks were lost (GitLab
// down longer than the delivery retries) still completes.
type Reconcile struct {
	Stage string
	IID   int
}

// CloseMR asks the service to close an MR with a comment saying why.
type CloseMR struct {
	Stage   string
	IID     int
	Comment string
}

// ReadAuthors asks the service to read the authors of the change again,
// and to report AuthorsRead.
type ReadAuthors struct {
	Stage         string
	Image         string
	SourceProject string
	SourceCommit  string
}

// CheckGates asks the service to verify the image's signature and/or its
// scan attestation against MaxSeverity and to report GatesChecked.
type CheckGates struct {
	Stage     string
	Image     string
	Signature bool
	Scan      bool
}

// Commit status states, as GitLab names them.
const (
	StatusPending  = "pending"
	StatusRunning  = "running"
	StatusSuccess  = "success"
	StatusFailed   = "failed"
	StatusCanceled = "canceled"
)

// SetStatus asks the service to post a commit status on the app's source
// commit. Name is "lotse/<stage>".
type SetStatus struct {
	SourceProject string
	SourceCommit  string
	Name          string
	State         string // StatusPending ... StatusCanceled
	Description   string
}

// CommentTarget is the MR a sticky comment belongs to: the GitOps MR of a
// stage (Stage and IID), or the app's source MR that produced SourceCommit
// in SourceProject (the service resolves the MR).
type CommentTarget struct {
	Stage         string
	IID           int
	SourceProject string
	SourceCommit  string
}

// UpsertComment asks the service to create or update the one sticky comment
// on the target MR. Body starts with the hidden marker (see Marker) the
// service looks for.
type UpsertComment struct {
	Target CommentTarget
	Body   string
}

// Reply asks the service to answer a ChatOps command with a new note on the
// MR the command was written on.
type Reply struct {
	Project string // empty: the GitOps project
	IID     int
	Body    string
}

// Audit kinds.
const (
	AuditLanded        = "landed"
	AuditHealth        = "health"
	AuditStarted       = "promotion-started"
	AuditGatesPassed   = "gates-passed"
	AuditBlocked       = "blocked"
	AuditMROpened      = "mr-opened"
	AuditMRUpdated     = "mr-updated"
	AuditApproved      = "approved"
	AuditUnapproved    = "unapproved"
	AuditMergeAsked    = "merge-requested"
	AuditMerged        = "merged"
	AuditSuperseded    = "superseded"
	AuditCancelled     = "cancelled"
	AuditCommand       = "command"
	AuditDenied        = "command-denied"
	AuditRollback      = "rollback-requested"
	AuditRetry         = "retry"
	AuditPromoted      = "promoted"
	AuditMergeDeferred = "merge-deferred"
	AuditTampered      = "tampered"
	AuditRunning       = "running"
	AuditFrozen        = "frozen"
	AuditUnfrozen      = "unfrozen"
	AuditBreakGlass    = "break-glass"
	AuditDegraded      = "degraded"
	AuditOutOfBand     = "out-of-band"
	AuditAccepted      = "out-of-band-accepted"
	AuditRecord        = "promotion-record"
)

// Audit is one record of the audit log: who did what to which image in
// which stage, when and why.
type Audit struct {
	App    string
	Kind   string // one of the Audit* kinds
	Stage  string
	Image  string
	Actor  User // the GitLab user; zero for lotse itself
	Detail string
	At     time.Time
}

func (Deploy) action()        {}
func (OpenMR) action()        {}
func (Rollback) action()      {}
func (MergeMR) action()       {}
func (CheckGates) action()    {}
func (SetStatus) action()     {}
func (UpsertComment) action() {}
func (Reply) action()         {}
func (Audit) action()         {}
func (CloseMR) action()       {}
func (Reconcile) action()     {}
func (ReadAuthors) action()   {}
