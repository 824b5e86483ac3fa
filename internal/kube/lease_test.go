package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dhctl-dev/dhctl/internal/kubetest"
)

// Against a real API server: one holder at a time, the second told who holds it; a lock whose
// holder died is taken over once it expired; `lock release` clears a stale one.
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
	if !errors.As(err, &locked) || locked.Holder != "ops@laptop pid 1" || !strings.Contains(err.Error(), "dhctl lock release") {
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
	if err := ReleaseLock(ctx, k, ""); err != nil {
		t.Fatalf("lock release: %v", err)
	}
	if _, err := k.CoordinationV1().Leases(LockNamespace).Get(ctx, LockName, metav1.GetOptions{}); err == nil {
		t.Error("the lease is still there after lock release")
	}
}
