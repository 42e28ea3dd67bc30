package webhook

import (
	"time"

	"github.com/lotse/lotse/internal/store"
)

// handoff carries deliveries from the intake straight to the workers of
// this process: stored already leased to owner, so that a worker needs
// neither a Lease transaction nor to read the body back. It holds at most
// n deliveries; when it is full, the intake stores deliveries as queued
// and wakes the workers, who lease them from the store.
//
// serve creates one and gives it to both sides: the intake reserves a
// place, stores and gives; the workers take and say they took. Neither
// side knows the other.
type handoff struct {
	owner string
	ttl   time.Duration
	slots chan struct{}
	ch    chan handed
	kick  chan struct{}
}

// handed is a delivery the intake hands to a worker, with its body decoded
// when it is a GitLab delivery.
type handed struct {
	d    store.Delivery
	hook *gitlabHook
}

// newHandoff makes a hand-off of n places (0: every delivery is queued),
// whose deliveries are leased to owner for ttl.
func newHandoff(owner string, ttl time.Duration, n int) *handoff {
	return &handoff{owner: owner, ttl: ttl, slots: make(chan struct{}, n), ch: make(chan handed, n), kick: make(chan struct{}, 1)}
}

// reserve takes a place for a delivery received at now and leases d to
// the hand-off's owner; false (and d unchanged) when there is no room.
func (h *handoff) reserve(d *store.Delivery, now time.Time) bool {
	select {
	case h.slots <- struct{}{}:
		d.LeaseOwner, d.LeaseUntil = h.owner, now.Add(h.ttl)
		return true
	default:
		return false
	}
}

// unreserve gives back a place reserved for a delivery that will not be
// given: it was a duplicate or could not be stored.
func (h *handoff) unreserve() { <-h.slots }

// give hands x to a worker in its reserved place; it never blocks.
func (h *handoff) give(x handed) { h.ch <- x }

// wake tells the workers that the store holds a new queued delivery.
func (h *handoff) wake() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// deliveries are what the intake gives. Whoever receives one owns its lease
// and must call took.
func (h *handoff) deliveries() <-chan handed { return h.ch }

// took frees the place of a received delivery.
func (h *handoff) took() { <-h.slots }

// kicks signals that the store holds new queued deliveries.
func (h *handoff) kicks() <-chan struct{} { return h.kick }
