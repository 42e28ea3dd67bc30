// Package promotion is the promotion engine of lotsed as a pure state
// machine: [Next] takes a [Policy] (the app's stages and gates, mapped from
// lotse.yaml by the caller), the app's [State], one [Event] and the time,
// and returns the new State and the [Action]s the service must carry out.
//
// Nothing in this package does I/O: no network, no disk, no clock, no
// goroutines, no logging. Everything the engine needs to know about the
// world arrives as an event (a GitLab webhook decoded by the service, the
// result of an action the service performed, an ArgoCD notification, a
// [Tick]), and everything it wants done leaves as an action (open or merge a
// merge request, check gates, post a commit status, upsert a sticky comment,
// write an audit record). The service stores the State (it is plain JSON)
// between events.
//
// A version moves through the stages like this: it lands in a stage
// ([Landed]); the promotion into the next stage checks the gates the stage
// requires (signature and scan by the service after [CheckGates]; soak and
// health from the state and the clock); a commit-mode stage is left to
// `lotse bump` in CI; a merge-request stage gets an MR that lotsed merges; an
// approval stage gets an MR that lotsed merges only once enough approvers
// who are neither the MR author, nor an author of the change, nor lotse's
// own user approved it (four-eyes on GitLab Free). When a promotion lands in
// an approval stage through lotse's MR, the engine builds its [Record] (the
// evidence: gates, approvals counted and not, the change, the MR, the
// times) and asks the service to sign and attach it ([AttestPromotion]).
//
// Every event is idempotent: GitLab sends two MR webhooks per push and
// re-delivers, so an event that changes nothing returns the state unchanged
// and no actions.
package promotion
