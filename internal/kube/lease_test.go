package kube

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dhctl-dev/dhctl/internal/kubetest"
)

// Against a real API server: one holder at a time, the second told who holds it; a lock whose
// holder died is taken over once it expired, or at once when it died on this machine; a release
// without a holder clears any.
func TestConvergeLock(t *testing.T) {
	t.Parallel()
	cluster := kubetest.Start(t, kubetest.Options{})
	c, err := New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	k := c.Typed()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := k.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: LockNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	a, err := AcquireLock(ctx, k, "ops@laptop pid 1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, err = AcquireLock(ctx, k, "ops@other pid 2", time.Minute)
	var locked *LockedError
	if !errors.As(err, &locked) || locked.Holder != "ops@laptop pid 1" || !strings.Contains(err.Error(), "run dhctl lock release") {
		t.Fatalf("second taker: %v", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := AcquireLock(ctx, k, "ops@other pid 2", time.Minute)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	// A release by someone else's run leaves it alone.
	if err := ReleaseLock(ctx, k, "ops@laptop pid 1"); err == nil {
		t.Error("a run released a lock it does not hold")
	}
	b.stop <- struct{}{} // the holder dies (kill -9): no renewal, no release
	<-b.done

	// A dead holder's lock: refused while it is fresh, taken over once it expired.
	stale := metav1.NewMicroTime(time.Now().Add(-2 * time.Minute))
	lease, err := k.CoordinationV1().Leases(LockNamespace).Get(ctx, LockName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lease.Spec.RenewTime = &stale
	if _, err := k.CoordinationV1().Leases(LockNamespace).Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c2, err := AcquireLock(ctx, k, "ops@third pid 3", time.Minute)
	if err != nil {
		t.Fatalf("an expired lock was not taken over: %v", err)
	}
	c2.stop <- struct{}{}
	<-c2.done

	// A holder of this machine, user and pid namespace: taken over at once when its process is
	// gone (a run killed with kill -9, then run again), refused while it lives; the same pid
	// and namespace on another host, or another namespace here, must wait for the expiry.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	alive := exec.Command("sleep", "120")
	if err := alive.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { alive.Process.Kill(); alive.Wait() }()
	here := func(pid int, ns string) string {
		return fmt.Sprintf("%spid %d in %s (destroy)", holderPrefix(), pid, ns)
	}
	for _, tc := range []struct {
		name, holder string
		takeOver     bool
	}{
		{"died here", here(dead.Process.Pid, pidNamespace()), true},
		{"alive here", here(alive.Process.Pid, pidNamespace()), false},
		{"another pid namespace", here(dead.Process.Pid, "pid:[1]"), false},
		{"another host", fmt.Sprintf("ops@elsewhere pid %d in %s", dead.Process.Pid, pidNamespace()), false},
		{"not dhctl's format", "someone", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ReleaseLock(ctx, k, ""); err != nil {
				t.Fatal(err)
			}
			held, err := AcquireLock(ctx, k, tc.holder, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			held.stop <- struct{}{} // it stops renewing: dead or not, it holds a fresh lease
			<-held.done
			next, err := AcquireLock(ctx, k, Holder(), time.Minute)
			if tc.takeOver && err != nil {
				t.Fatalf("a fresh lease of a holder that died here was not taken over: %v", err)
			}
			if !tc.takeOver && !errors.As(err, new(*LockedError)) {
				t.Fatalf("the lease of %q: %v, want it refused as locked", tc.holder, err)
			}
			if next != nil {
				next.stop <- struct{}{}
				<-next.done
			}
		})
	}
	if err := ReleaseLock(ctx, k, ""); err != nil {
		t.Fatalf("lock release: %v", err)
	}
	if _, err := k.CoordinationV1().Leases(LockNamespace).Get(ctx, LockName, metav1.GetOptions{}); err == nil {
		t.Error("the lease is still there after lock release")
	}
}
