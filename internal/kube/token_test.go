package kube

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dhctl-dev/dhctl/internal/kubetest"
)

// Against a real API server: a token with time left is kept; one about to expire, deleted (the
// token cleaner removes expired ones) or malformed is replaced by a new Secret kubeadm's join
// accepts.
func TestEnsureBootstrapToken(t *testing.T) {
	t.Parallel()
	cluster := kubetest.Start(t, kubetest.Options{})
	c, err := New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	k := c.Typed()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	now := time.Now()
	n := 0
	fresh := func() (string, error) { n++; return fmt.Sprintf("new%03d.0123456789abcdef", n), nil }
	put := func(id string, exp time.Time) {
		t.Helper()
		_, err := k.CoreV1().Secrets("kube-system").Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id, Namespace: "kube-system"},
			Type:       corev1.SecretTypeBootstrapToken,
			StringData: map[string]string{"token-id": id, "token-secret": "0123456789abcdef", "expiration": exp.UTC().Format(time.RFC3339)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	put("fresh1", now.Add(20*time.Hour))
	put("stale1", now.Add(30*time.Minute))
	for _, tc := range []struct{ current, want string }{
		{"fresh1.0123456789abcdef", "fresh1.0123456789abcdef"},
		{"stale1.0123456789abcdef", "new001.0123456789abcdef"},
		{"gone01.0123456789abcdef", "new002.0123456789abcdef"},
		{"", "new003.0123456789abcdef"},
	} {
		got, renewed, err := EnsureBootstrapToken(ctx, k, tc.current, fresh, now)
		if err != nil || got != tc.want || renewed != (got != tc.current) {
			t.Errorf("EnsureBootstrapToken(%q) = %q, %v, %v; want %q", tc.current, got, renewed, err, tc.want)
		}
	}
	s, err := k.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-new002", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	exp, err := time.Parse(time.RFC3339, string(s.Data["expiration"]))
	if s.Type != corev1.SecretTypeBootstrapToken || string(s.Data["token-secret"]) != "0123456789abcdef" ||
		string(s.Data["usage-bootstrap-authentication"]) != "true" || string(s.Data["usage-bootstrap-signing"]) != "true" ||
		string(s.Data["auth-extra-groups"]) != "system:bootstrappers:kubeadm:default-node-token" || err != nil || exp.Sub(now) < 23*time.Hour {
		t.Errorf("the new token's Secret: type %s, data %q", s.Type, s.Data)
	}
}
