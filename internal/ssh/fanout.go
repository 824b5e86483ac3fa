package ssh

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// DefaultConcurrency is how many hosts Fanout works on at once unless told otherwise.
const DefaultConcurrency = 32

// FanoutOptions bound a Fanout.
type FanoutOptions struct {
	// Concurrency is the maximum number of hosts handled at once (DefaultConcurrency when 0).
	Concurrency int
	// PerHostTimeout, when positive, bounds the action on each host, so a dead host fails with a
	// timeout instead of holding its slot forever.
	PerHostTimeout time.Duration
}

// HostResult is one host's outcome.
type HostResult[T any] struct {
	Client   *Client
	Value    T
	Err      error
	Duration time.Duration
}

// Fanout runs fn for every client in parallel, at most opts.Concurrency at a time, and returns
// one result per client in the input order. A failing, slow or panicking host affects only its
// own result.
func Fanout[T any](ctx context.Context, clients []*Client, opts FanoutOptions, fn func(ctx context.Context, c *Client) (T, error)) []HostResult[T] {
	n := opts.Concurrency
	if n <= 0 {
		n = DefaultConcurrency
	}
	results := make([]HostResult[T], len(clients))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, c := range clients {
		results[i].Client = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i].Err = fmt.Errorf("%s: not started: %w", c.Target(), ctx.Err())
				return
			}
			defer func() { <-sem }()
			results[i] = runOne(ctx, c, opts.PerHostTimeout, fn)
		}()
	}
	wg.Wait()
	return results
}

func runOne[T any](ctx context.Context, c *Client, timeout time.Duration, fn func(context.Context, *Client) (T, error)) (r HostResult[T]) {
	r.Client = c
	start := time.Now()
	parent, deadline := ctx, start.Add(timeout)
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	defer func() {
		r.Duration = time.Since(start)
		if p := recover(); p != nil {
			r.Err = fmt.Errorf("%s: internal error (panic): %v", c.Target(), p)
		}
		// Only when this bound fired: a timeout from a shorter bound inside fn (e.g. the
		// connect timeout) or the caller's deadline is not "did not finish within timeout".
		if r.Err != nil && timeout > 0 && expiredBound(parent, deadline, r.Err) == boundOwn {
			r.Err = fmt.Errorf("%s: did not finish within %s (the per-host timeout): %w", c.Target(), timeout, r.Err)
		}
	}()
	r.Value, r.Err = fn(ctx, c)
	return r
}

// FanoutErrors joins the errors of all failed hosts (nil when all succeeded).
func FanoutErrors[T any](results []HostResult[T]) error {
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return errors.Join(errs...)
}
