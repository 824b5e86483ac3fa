package main

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/kubetest"
)

// `dhctl lock show|release` against a real API server: a lock left by a run of another machine is
// shown with its holder, kept without confirmation, released with it; then there is none.
func TestLockShowAndRelease(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{})
	c, err := kube.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.Typed().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kube.LockNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	held, err := kube.AcquireLock(ctx, c.Typed(), "ops@laptop pid 4242 in pid:[1] (converge)", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_ = held // renewed in the background until the test ends, as by a run on another machine

	kc := "--kubeconfig=" + cluster.Kubeconfig
	code, out, errOut := runCLI(t, nil, "lock", "show", kc)
	if code != 0 || !strings.Contains(out, "held by ops@laptop pid 4242 in pid:[1] (converge)") || !strings.Contains(out, "expires ") {
		t.Fatalf("lock show: exit %d, %q %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, nil, "lock", "release", kc)
	if code != 3 || !strings.Contains(errOut, "lock release not confirmed: the lock is kept") || !strings.Contains(out, "ops@laptop") {
		t.Fatalf("unconfirmed release: exit %d, %q %q", code, out, errOut)
	}
	if info, err := kube.ReadLock(ctx, c.Typed()); err != nil || info == nil {
		t.Fatalf("after the unconfirmed release the lock is %v (%v), want it kept", info, err)
	}
	code, out, errOut = runCLI(t, nil, "lock", "release", kc, "--yes-i-am-sane-and-i-understand-what-i-am-doing")
	if code != 0 || !strings.Contains(out, "lock released") {
		t.Fatalf("release: exit %d, %q %q", code, out, errOut)
	}
	if info, err := kube.ReadLock(ctx, c.Typed()); err != nil || info != nil {
		t.Fatalf("after the release the lock is %+v (%v), want none", info, err)
	}
	code, out, _ = runCLI(t, nil, "lock", "release", kc, "--yes-i-am-sane-and-i-understand-what-i-am-doing")
	if code != 0 || !strings.Contains(out, "no converge lock is held") {
		t.Fatalf("release with no lock: exit %d, %q", code, out)
	}
	code, _, errOut = runCLI(t, nil, "lock", "show", "--kubeconfig=/nonexistent/kubeconfig")
	if code != 2 || !strings.Contains(errOut, "--kubeconfig /nonexistent/kubeconfig") {
		t.Fatalf("lock show with a missing kubeconfig: exit %d, %q", code, errOut)
	}
}
