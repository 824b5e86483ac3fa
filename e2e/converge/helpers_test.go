package converge_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dhctl-dev/dhctl/e2e/internal/lab"
	"github.com/dhctl-dev/dhctl/e2e/internal/rigtest"
)

// staticConfig is the lab's cluster whose master and worker groups take StaticInstances: the
// first master's and the bootstrap worker's machines, then two more masters and one more worker.
func staticConfig(masters, workers int, key, workerTemplate string) string {
	instance := func(name, role string, machine int) string {
		return fmt.Sprintf(`---
apiVersion: deckhouse.io/v1alpha1
kind: StaticInstance
metadata:
  name: %s
  labels: {role: %s}
spec:
  address: "{{index .Addresses %d}}"
  credentialsRef: {kind: SSHCredentials, name: rig-root}
`, name, role, machine)
	}
	return lab.StaticCluster + fmt.Sprintf(`---
apiVersion: deckhouse.io/v1
kind: NodeGroup
metadata:
  name: master
spec:
  nodeType: Static
  staticInstances:
    count: %d
    labelSelector:
      matchLabels: {role: master}
  nodeTemplate:
    labels:
      node-role.kubernetes.io/control-plane: ""
      node-role.kubernetes.io/master: ""
    taints:
    - {key: node-role.kubernetes.io/control-plane, effect: NoSchedule}
---
apiVersion: deckhouse.io/v1
kind: NodeGroup
metadata:
  name: worker
spec:
  nodeType: Static
  staticInstances:
    count: %d
    labelSelector:
      matchLabels: {role: worker}
  nodeTemplate:
%s---
apiVersion: deckhouse.io/v1alpha1
kind: SSHCredentials
metadata:
  name: rig-root
spec:
  user: root
  privateSSHKey: %s
`, masters, workers, workerTemplate, key) +
		instance("si-m1", "master", 0) + instance("si-m2", "master", 2) + instance("si-m3", "master", 3) +
		instance("si-w1", "worker", 1) + instance("si-w2", "worker", 4) +
		lab.CNI + lab.DeckhouseModuleConfig + lab.KubeProxy
}

// checkNodes wants nodes Ready nodes and masters etcd pods Running.
func checkNodes(ctx context.Context, t *testing.T, l *lab.Lab, nodes, masters int) {
	t.Helper()
	rigtest.WaitFor(ctx, t, 3*time.Minute, fmt.Sprintf("%d nodes Ready and %d etcd pods Running", nodes, masters), func() (bool, string) {
		ready, _ := l.Kubectl(ctx, "get", "nodes", "-o", `jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		etcd, _ := l.Kubectl(ctx, "-n", "kube-system", "get", "pods", "-l", "component=etcd", "--field-selector", "status.phase=Running", "-o", "name")
		return strings.Count(ready, "True") == nodes && strings.Count(ready, "\n") == nodes && strings.Count(etcd, "pod/") == masters,
			fmt.Sprintf("nodes Ready: %q; etcd pods: %q", ready, etcd)
	})
}

// probe asks the API server (/readyz, through the control-plane endpoint) and a Service (a DNS
// query to CoreDNS through a NodePort) every 300 ms and counts what failed.
type probe struct {
	mu            sync.Mutex
	total, failed int
	outageStart   time.Time
	longest       time.Duration
	cancel        context.CancelFunc
	done          chan struct{}
}

func startProbe(ctx context.Context, t *testing.T, l *lab.Lab, dnsAddr string) *probe {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dial = l.Rig.DialContext
	cfg.Timeout = 2 * time.Second
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Only the rig's CoreDNS, through the rig's namespace: never the machine's resolver.
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return l.Rig.DialContext(ctx, "udp", dnsAddr)
	}}
	ctx, cancel := context.WithCancel(ctx)
	p := &probe{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			_, apiErr := k.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
			_, dnsErr := resolver.LookupHost(rctx, "kubernetes.default.svc.cluster.local.")
			rcancel()
			if ctx.Err() != nil {
				return
			}
			p.record(apiErr, dnsErr)
		}
	}()
	return p
}

func (p *probe) record(errs ...error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	bad := false
	for _, err := range errs {
		p.total++
		if err != nil {
			p.failed++
			bad = true
		}
	}
	switch {
	case bad && p.outageStart.IsZero():
		p.outageStart = now
	case !bad && !p.outageStart.IsZero():
		p.longest = max(p.longest, now.Sub(p.outageStart))
		p.outageStart = time.Time{}
	}
}

func (p *probe) stop() (total, failed int, longest time.Duration) {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.outageStart.IsZero() {
		p.longest = max(p.longest, time.Since(p.outageStart))
	}
	return p.total, p.failed, p.longest
}
