package kube

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Bootstrap tokens as kubeadm makes them: a Secret kube-system/bootstrap-token-<id> that the
// API server accepts for a node's first contact (authentication, signing of cluster-info) until
// its expiration, for the group kubeadm's join binds.
const (
	BootstrapTokenTTL = 24 * time.Hour
	// bootstrapTokenMinLeft is what a token must have left to be used for a join: one that
	// would expire during the join is replaced first.
	bootstrapTokenMinLeft = time.Hour
	bootstrapTokenGroups  = "system:bootstrappers:kubeadm:default-node-token"
)

// EnsureBootstrapToken returns a token nodes can join with: current ("<id>.<secret>") while its
// Secret exists and has an hour left, else a new one from fresh, valid for BootstrapTokenTTL
// (the first one expires 24 h after the bootstrap; a node added later still joins).
func EnsureBootstrapToken(ctx context.Context, k kubernetes.Interface, current string, fresh func() (string, error), now time.Time) (token string, renewed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	secrets := k.CoreV1().Secrets("kube-system")
	if id, _, ok := strings.Cut(current, "."); ok && id != "" {
		s, err := secrets.Get(ctx, "bootstrap-token-"+id, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return "", false, fmt.Errorf("reading the bootstrap token %s: %w", id, err)
		default:
			exp, perr := time.Parse(time.RFC3339, string(s.Data["expiration"]))
			if len(s.Data["expiration"]) == 0 || (perr == nil && exp.After(now.Add(bootstrapTokenMinLeft))) {
				return current, false, nil
			}
		}
	}
	token, err = fresh()
	if err != nil {
		return "", false, err
	}
	id, secret, ok := strings.Cut(token, ".")
	if !ok {
		return "", false, fmt.Errorf("a new bootstrap token is not <id>.<secret>")
	}
	_, err = secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id, Namespace: "kube-system"},
		Type:       corev1.SecretTypeBootstrapToken,
		StringData: map[string]string{
			"description":                    "made by dhctl for nodes joining after the first token expired",
			"token-id":                       id,
			"token-secret":                   secret,
			"expiration":                     now.Add(BootstrapTokenTTL).UTC().Format(time.RFC3339),
			"usage-bootstrap-authentication": "true",
			"usage-bootstrap-signing":        "true",
			"auth-extra-groups":              bootstrapTokenGroups,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", false, fmt.Errorf("making a new bootstrap token: %w", err)
	}
	return token, true, nil
}
