// Package testctx gives long e2e tests a context that ends before `go test
// -timeout` would panic, so a slow cold build fails with a message and the
// test's cleanup (machines, mounts, namespaces) still runs.
package testctx

import (
	"context"
	"time"
)

// cleanupMargin is kept between the context's end and the test binary's
// deadline for t.Cleanup to stop machines and remove what they left.
const cleanupMargin = 90 * time.Second

// Deadliner is *testing.T.
type Deadliner interface {
	Deadline() (time.Time, bool)
}

// New returns a context ending after max, or cleanupMargin before the test
// binary's deadline, whichever comes first.
func New(t Deadliner, max time.Duration) (context.Context, context.CancelFunc) {
	end := time.Now().Add(max)
	if dl, ok := t.Deadline(); ok && dl.Add(-cleanupMargin).Before(end) {
		end = dl.Add(-cleanupMargin)
	}
	return context.WithDeadline(context.Background(), end)
}
