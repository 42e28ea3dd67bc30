package audit

import "time"

// Filter selects audit records; zero fields select everything.
type Filter struct {
	App   string
	Stage string
	Kind  string
	// Since keeps records at or after it.
	Since time.Time
	// Chain lists in chain order, oldest first, the records after After
	// (Seq > After), for paging through the chain. Without it the newest
	// come first and After is ignored.
	Chain bool
	After int64
	// Limit caps the number of records; <= 0 means 100.
	Limit int
}

// Partial reports whether f may leave records of the chain out: filtered
// by app, stage, kind or time. Such a selection verifies only partially
// (NewVerifier(true)).
func (f Filter) Partial() bool {
	return f.App != "" || f.Stage != "" || f.Kind != "" || !f.Since.IsZero() || f.After > 0
}
