package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The converge lock: Deckhouse's dhctl takes this Lease before changing a cluster's nodes, so two
// converges, or a converge and a destroy, never run at once.
const (
	LockNamespace = "d8-system"
	LockName      = "d8-converge-lock"
)

// DefaultLeaseDuration is how long a lock outlives a holder that died on another machine: a run
// killed with kill -9 there blocks runs elsewhere for at most this long. On its own machine the
// next run sees that the holder is gone and takes the lock over at once.
const DefaultLeaseDuration = 5 * time.Minute

// Holder names this process: user@host, pid and pid namespace. The namespace makes the pid
// meaningful: a later run on the same host, in the same namespace, can tell that the holder
// died (see heldByTheDead); in any other place the pid says nothing and the lease must expire.
func Holder() string {
	return fmt.Sprintf("%spid %d in %s", holderPrefix(), os.Getpid(), pidNamespace())
}

func holderPrefix() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host + " "
}

// pidNamespace is this process's pid namespace, e.g. "pid:[4026531836]" ("" when unknown).
func pidNamespace() string {
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return ns
}

// heldByTheDead reports whether holder (as Holder makes it, with any suffix) is a process of this
// user on this host, in this pid namespace, that no longer exists. Anything else, a holder that
// cannot be parsed included, is presumed alive. A pid reused since only makes the caller wait.
func heldByTheDead(holder string) bool {
	rest, ok := strings.CutPrefix(holder, holderPrefix()+"pid ")
	if !ok {
		return false
	}
	f := strings.Fields(rest)
	ns := pidNamespace()
	if len(f) < 3 || f[1] != "in" || ns == "" || f[2] != ns {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// Lock is a held Lease, renewed in the background until Release. Lost reports (once) that a
// renewal failed: the caller must stop at its next safe point.
type Lock struct {
	k        kubernetes.Interface
	holder   string
	duration time.Duration
	stop     chan struct{}
	done     chan struct{}
	lostOnce sync.Once
	lost     chan error
}

// LockedError says another process holds the lock.
type LockedError struct {
	Holder  string
	Renewed time.Time
	Expires time.Time
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("the cluster is locked by %s (Lease %s/%s, renewed %s, expires %s): another converge or destroy is running; wait for it, or, if it died on another machine, until the lease expires (or, once sure no run holds it, run dhctl lock release)",
		e.Holder, LockNamespace, LockName, e.Renewed.Format(time.RFC3339), e.Expires.Format(time.RFC3339))
}

// AcquireLock takes the lock for holder: it creates the Lease, takes it over when it expired or
// its holder died on this machine (a re-run after kill -9 goes on at once), or renews it when
// holder already has it.
func AcquireLock(ctx context.Context, k kubernetes.Interface, holder string, duration time.Duration) (*Lock, error) {
	if duration <= 0 {
		duration = DefaultLeaseDuration
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	leases := k.CoordinationV1().Leases(LockNamespace)
	now := metav1.NewMicroTime(time.Now())
	secs := int32(duration / time.Second)
	cur, err := leases.Get(ctx, LockName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: LockName, Namespace: LockNamespace},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return AcquireLock(ctx, k, holder, duration) // lost a race: look again
		}
	case err != nil:
	default:
		if h, renewed, expires := leaseInfo(cur); h != "" && h != holder && time.Now().Before(expires) && !heldByTheDead(h) {
			return nil, &LockedError{Holder: h, Renewed: renewed, Expires: expires}
		}
		cur.Spec.HolderIdentity, cur.Spec.LeaseDurationSeconds, cur.Spec.AcquireTime, cur.Spec.RenewTime = &holder, &secs, &now, &now
		// The update carries the resourceVersion read above: a concurrent taker makes it fail.
		_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("taking the lock (Lease %s/%s): %w", LockNamespace, LockName, err)
	}
	l := &Lock{k: k, holder: holder, duration: duration, stop: make(chan struct{}), done: make(chan struct{}), lost: make(chan error, 1)}
	go l.renew()
	return l, nil
}

func leaseInfo(l *coordinationv1.Lease) (holder string, renewed, expires time.Time) {
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if l.Spec.RenewTime != nil {
		renewed = l.Spec.RenewTime.Time
	}
	d := DefaultLeaseDuration
	if l.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return holder, renewed, renewed.Add(d)
}

// renew refreshes the lease at a third of its duration until Release.
func (l *Lock) renew() {
	defer close(l.done)
	t := time.NewTicker(l.duration / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if err := l.renewOnce(); err != nil {
				l.lostOnce.Do(func() { l.lost <- err })
			}
		}
	}
}

func (l *Lock) renewOnce() error {
	ctx, cancel := context.WithTimeout(context.Background(), l.duration/3)
	defer cancel()
	leases := l.k.CoordinationV1().Leases(LockNamespace)
	cur, err := leases.Get(ctx, LockName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("renewing the lock: %w", err)
	}
	if h, _, _ := leaseInfo(cur); h != l.holder {
		return fmt.Errorf("the lock was taken over by %s", h)
	}
	now := metav1.NewMicroTime(time.Now())
	cur.Spec.RenewTime = &now
	if _, err := leases.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("renewing the lock: %w", err)
	}
	return nil
}

// Lost delivers the first renewal failure.
func (l *Lock) Lost() <-chan error { return l.lost }

// Release stops renewing and deletes the lease if it is still this holder's.
func (l *Lock) Release(ctx context.Context) error {
	close(l.stop)
	<-l.done
	return ReleaseLock(ctx, l.k, l.holder)
}

// LockInfo is who holds the lock and until when.
type LockInfo struct {
	Holder           string
	Renewed, Expires time.Time
	// Dead: the holder was a process of this machine that is gone (its lease can be taken now).
	Dead bool
}

// ReadLock tells who holds the lock; nil when no lease exists.
func ReadLock(ctx context.Context, k kubernetes.Interface) (*LockInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cur, err := k.CoordinationV1().Leases(LockNamespace).Get(ctx, LockName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the lock (Lease %s/%s): %w", LockNamespace, LockName, err)
	}
	h, renewed, expires := leaseInfo(cur)
	return &LockInfo{Holder: h, Renewed: renewed, Expires: expires, Dead: heldByTheDead(h)}, nil
}

// ReleaseLock deletes the lease: when holder is "" whoever holds it, else only if holder holds it.
func ReleaseLock(ctx context.Context, k kubernetes.Interface, holder string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	leases := k.CoordinationV1().Leases(LockNamespace)
	cur, err := leases.Get(ctx, LockName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if h, _, _ := leaseInfo(cur); holder != "" && h != holder {
		return errors.New("the lock is held by " + h + ", not by this run: left as it is")
	}
	rv := cur.ResourceVersion
	err = leases.Delete(ctx, LockName, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
