package kubetest

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The harness brings up a control plane that answers and lets an admin list namespaces; with
// Controllers, the controller manager creates the default ServiceAccount.
func TestStartWithControllers(t *testing.T) {
	c := Start(t, Options{Controllers: true})
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("namespace default: %v", err)
	}
	for {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("controller manager never created default/default ServiceAccount: %v%s", err, c.logTails())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
