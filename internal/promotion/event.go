package promotion

import (
	"time"

	"github.com/lotse/lotse/internal/vuln"
)

// Event is something that happened: a GitLab webhook decoded by the service,
// the result of an action the service carried out, an ArgoCD notification,
// or the passing of time. The concrete types are the structs of this file.
type Event interface {
	event()
}

// Landed says a commit with lotse trailers for this app and stage reached
// the GitOps default branch. It carries the facts the service read itself;
// the engine decides whether it is a landing or an out-of-band change.
type Landed struct {
	Stage         string
	Image         string
	SourceProject string
	SourceCommit  string
	// ChangeAuthors are the authors and committers of the change that built
	// the image, and the authors of its MRs.
	ChangeAuthors []User
	// AuthorsErr says why the change's authors could not be read (the app
	// project is unreadable, GitLab failed); empty when they were.
	AuthorsErr string
	Commit     string // the GitOps commit; identifies the landing
	// Head is the default branch's head after the push that landed it (a
	// merge commit for MR stages): ArgoCD reports this revision.
	Head string
	// Pusher is who moved the default branch (GitLab's push event user):
	// lotse merging, or a writer's token committing.
	Pusher User
	// Mismatch says how the commit's change differs from its trailers
	// (another image in the values file, another file); empty when they
	// match.
	Mismatch string
	At       time.Time
}

// OutOfBandChange says a change of a stage's values file reached the
// default branch without lotse trailers.
type OutOfBandChange struct {
	Stage  string
	Commit string
	Pusher User
	Reason string // what changed, e.g. "apps/shop/envs/production/values.yaml changed without lotse trailers"
	At     time.Time
}

// MROpened says the MR of a promotion exists: GitLab's "open" webhook, or
// the service reusing the open MR of the branch for OpenMR or Rollback.
type MROpened struct {
	Stage  string
	IID    int
	Author User
	Image  string // the image the MR writes; empty: unknown
	SHA    string // lotse's commit on the MR; empty: unknown
	// Approvals are those the MR had when lotse read it back, each with
	// the head it was read at.
	Approvals []Approval
	// Closed are MRs of others that lotse found on its branch and closed,
	// described for the audit ("!7 by @dev"); someone tried to take the
	// branch.
	Closed []string
}

// MRUpdated says commits were pushed to the MR (GitLab's "update" webhook).
type MRUpdated struct {
	Stage  string
	IID    int
	SHA    string // the MR's head commit
	Pusher User   // who pushed
}

// MRApproved says User approved the MR at head SHA.
type MRApproved struct {
	Stage string
	IID   int
	User  User
	SHA   string // the MR's head when approved; empty: unknown
}

// MRUnapproved says User withdrew their approval.
type MRUnapproved struct {
	Stage string
	IID   int
	User  User
}

// Approvals is the list of approvers GitLab shows for the MR now (read
// back by Reconcile): recorded approvals missing from it were revoked.
type Approvals struct {
	Stage string
	IID   int
	Users []User
}

// MRMerged says the MR was merged.
type MRMerged struct {
	Stage string
	IID   int
	By    User
}

// MRClosed says the MR was closed without merging.
type MRClosed struct {
	Stage string
	IID   int
}

// Command is an MR note that may carry a ChatOps command. Stage is the stage
// of the GitOps MR the note was written on (from its branch), empty for
// other MRs.
type Command struct {
	Stage   string
	Project string // the project of the MR; empty: the GitOps project
	IID     int
	NoteID  int64 // GitLab's note id; drops re-deliveries (0: no dedup)
	User    User
	Text    string
}

// Result is the outcome of one gate the service checked.
type Result struct {
	Checked bool   // false: the gate was not checked (not asked, or it could not be)
	OK      bool   // the gate passed
	Reason  string // shown in the comment either way
}

// ScanFacts is what the service read from the image's verified vuln
// attestation. The engine compares them with the stage's MaxSeverity: the
// service reports facts and never judges them.
type ScanFacts struct {
	Checked  bool          // false: no verified vuln attestation could be read; Reason says why
	Findings int           // findings in the attested report
	Highest  vuln.Severity // the highest severity among them; meaningless when Findings is 0
	Reason   string        // why it could not be checked
	// ScannedAt is when that scan was made (metadata.scanFinishedOn, else
	// scanStartedOn); zero when the attestation does not say.
	ScannedAt time.Time
}

// GatesChecked is what the service found after a CheckGates action.
type GatesChecked struct {
	Stage     string
	Image     string
	Signature Result
	Scan      ScanFacts
}

// Health is an ArgoCD notification about the app in a stage.
type Health struct {
	Stage   string
	Healthy bool   // ArgoCD reports Healthy and Synced
	Reason  string // e.g. "Degraded: Deployment shop has 0/2 ready pods"
	// Revision is the Git revision ArgoCD synced; Images the images it
	// runs. When either is given the report counts only for the version
	// they name: Images containing its digest, or Revision being the commit
	// that landed it (or the branch head that landing left). A report
	// without either is judged by its time alone.
	Revision string
	Images   []string
	// Degraded: ArgoCD reports the app Degraded (not just progressing).
	Degraded bool
	At       time.Time // when lotsed received the report
}

// MergeOutcome is what GitLab answered to a merge.
type MergeOutcome string

// The merge outcomes.
const (
	// MergeDone: GitLab merged the MR.
	MergeDone MergeOutcome = "merged"
	// MergeNotYet: GitLab still computes mergeability (detailed_merge_status
	// "checking" or "unchecked"); ask again later.
	MergeNotYet MergeOutcome = "not-yet"
	// MergeNotMergeable: conflicts, a failed pipeline, a protected branch...
	MergeNotMergeable MergeOutcome = "not-mergeable"
	// MergeAlreadyMerged: the MR was merged already.
	MergeAlreadyMerged MergeOutcome = "already-merged"
	// MergeTampered: the MR is not what lotse wrote (other commits, another
	// head, other files); it was not merged. Reason says what and who.
	MergeTampered MergeOutcome = "tampered"
	// MergeWaitPipeline: the required pipeline for the commit has not
	// finished (or not started); ask again on a later tick.
	MergeWaitPipeline MergeOutcome = "wait-pipeline"
	// MergePipelineFailed: the required pipeline failed; Reason links it.
	MergePipelineFailed MergeOutcome = "pipeline-failed"
)

// MergeResult is what the service saw when it carried out MergeMR.
type MergeResult struct {
	Stage   string
	IID     int
	Attempt int // MergeMR.Attempt this answers; 0: unknown
	Outcome MergeOutcome
	Reason  string
}

// AuthorsRead is the result of a ReadAuthors action.
type AuthorsRead struct {
	Stage   string
	Image   string
	Authors []User
	Err     string // why they still could not be read
}

// Freeze sets (or with Lift, lifts) a stop-the-line freeze of Stage (""
// for every stage), from lotsed's API.
type Freeze struct {
	Stage  string
	Reason string
	By     User
	Lift   bool
}

// Tick says time passed: soak timers and merge retries are due.
type Tick struct{}

func (Landed) event()          {}
func (OutOfBandChange) event() {}
func (AuthorsRead) event()     {}
func (Approvals) event()       {}
func (Freeze) event()          {}
func (MROpened) event()        {}
func (MRUpdated) event()       {}
func (MRApproved) event()      {}
func (MRUnapproved) event()    {}
func (MRMerged) event()        {}
func (MRClosed) event()        {}
func (Command) event()         {}
func (GatesChecked) event()    {}
func (Health) event()          {}
func (MergeResult) event()     {}
func (Tick) event()            {}
