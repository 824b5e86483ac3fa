package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/dhctl-dev/dhctl/internal/kube"
	"github.com/dhctl-dev/dhctl/internal/kubetest"
	"github.com/dhctl-dev/dhctl/templates"
)

// syncBuffer collects the controller's log while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines are the JSON log lines so far.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("log line is not JSON: %q", l)
			continue
		}
		out = append(out, m)
	}
	return out
}

func (s *syncBuffer) find(t *testing.T, msg string) map[string]any {
	for _, l := range s.lines(t) {
		if l["msg"] == msg {
			return l
		}
	}
	return nil
}

// fullEnv is what Deckhouse's Deployment gives the controller.
func fullEnv(t *testing.T) map[string]string {
	downloaded := t.TempDir()
	if err := os.Mkdir(filepath.Join(downloaded, "modules"), 0o700); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, k := range requiredEnv {
		env[k] = "x"
	}
	env["LOG_TYPE"] = "json"
	env["DECKHOUSE_POD"] = "deckhouse-5d4f7c9b8-abcde"
	env["DECKHOUSE_BUNDLE"] = "Minimal"
	env["DOWNLOADED_MODULES_DIR"] = downloaded
	return env
}

func start(t *testing.T, env map[string]string, cfg func() (*rest.Config, error)) (url string, log *syncBuffer, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(k string) string { return env[k] }, log, cfg, ln) }()
	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(20 * time.Second):
				stopErr = errors.New("run did not return within 20 s of cancel")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return "http://" + ln.Addr().String(), log, stop
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, within, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestRefusesReadinessWithoutTheDeploymentsEnvironment(t *testing.T) {
	noAPI := func() (*rest.Config, error) {
		t.Error("the controller reached for the API server although its environment is incomplete")
		return nil, errors.New("no API")
	}
	for _, drop := range []string{"DECKHOUSE_BUNDLE", "ADDON_OPERATOR_LISTEN_PORT", "KUBERNETES_SERVICE_HOST", "MODULES_DIR"} {
		env := fullEnv(t)
		delete(env, drop)
		url, log, stop := start(t, env, noAPI)
		eventually(t, 5*time.Second, "readyz names "+drop, func() (bool, string) {
			code, body := get(t, url+"/readyz")
			return code == http.StatusServiceUnavailable && strings.Contains(body, drop), body
		})
		if code, _ := get(t, url+"/healthz"); code != 200 {
			t.Errorf("without %s: /healthz %d, want 200 (alive, not ready)", drop, code)
		}
		if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("stop: %v", err)
		}
		if l := log.lines(t); len(l) < 2 || l[len(l)-1]["level"] != "error" {
			t.Errorf("without %s: want an error line last, log %v", drop, l)
		}
	}
	env := fullEnv(t)
	env["LOG_TYPE"] = "text"
	url, _, _ := start(t, env, noAPI)
	eventually(t, 5*time.Second, "readyz refuses LOG_TYPE=text", func() (bool, string) {
		code, body := get(t, url+"/readyz")
		return code == 503 && strings.Contains(body, "LOG_TYPE"), body
	})
	env = fullEnv(t)
	env["DOWNLOADED_MODULES_DIR"] = t.TempDir() // without modules/, which the init container makes
	url, _, _ = start(t, env, noAPI)
	eventually(t, 5*time.Second, "readyz refuses a missing modules dir", func() (bool, string) {
		code, body := get(t, url+"/readyz")
		return code == 503 && strings.Contains(body, "init container"), body
	})
}

func TestHonoursTheBootstrapLockLeaseAndLogContract(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{})
	client, err := kube.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	crd, err := templates.FS.ReadFile("crds/moduleconfig.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs := []*unstructured.Unstructured{object(t, string(crd)),
		object(t, `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"d8-system"}}`),
		object(t, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deckhouse-bootstrap-lock","namespace":"d8-system"}}`),
		object(t, `{"apiVersion":"deckhouse.io/v1alpha1","kind":"ModuleConfig","metadata":{"name":"deckhouse"},"spec":{"version":1,"settings":{"bundle":"Minimal","logLevel":"Info"}}}`),
		object(t, `{"apiVersion":"deckhouse.io/v1alpha1","kind":"ModuleConfig","metadata":{"name":"cni-flannel"},"spec":{"enabled":true}}`),
		object(t, `{"apiVersion":"deckhouse.io/v1alpha1","kind":"ModuleConfig","metadata":{"name":"prometheus"},"spec":{"enabled":false}}`),
	}
	if _, err := client.ApplyAll(ctx, objs, kube.ApplyOptions{Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	env := fullEnv(t)
	url, log, stop := start(t, env, func() (*rest.Config, error) { return rest.CopyConfig(cluster.Config), nil })

	eventually(t, 10*time.Second, "the controller sees the bootstrap lock", func() (bool, string) {
		return log.find(t, "bootstrap lock config map exists, wait for bootstrap") != nil, ""
	})
	time.Sleep(3 * time.Second) // held: not leading, not Ready
	if code, body := get(t, url+"/readyz"); code != 503 || !strings.Contains(body, "bootstrap lock") {
		t.Errorf("while the lock exists: /readyz %d %q, want 503 naming the lock", code, body)
	}
	if _, err := client.Typed().CoordinationV1().Leases("d8-system").Get(ctx, leaseName, metav1.GetOptions{}); err == nil {
		t.Error("the controller took the leader Lease while the bootstrap lock existed")
	}

	if err := client.Typed().CoreV1().ConfigMaps("d8-system").Delete(ctx, lockName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "Ready after the lock went", func() (bool, string) {
		code, body := get(t, url+"/readyz")
		return code == 200 && body == "ok", body
	})
	lease, err := client.Typed().CoordinationV1().Leases("d8-system").Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || !strings.HasPrefix(*lease.Spec.HolderIdentity, env["DECKHOUSE_POD"]+".") {
		t.Errorf("leader Lease: %+v %v, want a holder %q.<suffix>", lease, err, env["DECKHOUSE_POD"])
	}
	var ready []string
	for _, l := range log.lines(t) {
		if l["msg"] == msgModuleOK {
			ready = append(ready, l["module"].(string))
		}
	}
	if strings.Join(ready, ",") != "cni-flannel,deckhouse" {
		t.Errorf("modules reported ready: %v, want cni-flannel,deckhouse (prometheus is disabled)", ready)
	}
	done := log.find(t, msgConverged)
	if done == nil || done["level"] != "info" || done["releaseChannel"] != "" || done["bundle"] != "Minimal" {
		t.Errorf("converge line: %v", done)
	}

	mc := object(t, `{"apiVersion":"deckhouse.io/v1alpha1","kind":"ModuleConfig","metadata":{"name":"deckhouse"},"spec":{"version":1,"settings":{"bundle":"Minimal","logLevel":"Info","releaseChannel":"Stable"}}}`)
	if _, err := client.Apply(ctx, mc); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the release channel change is logged", func() (bool, string) {
		l := log.find(t, "release channel changed")
		return l != nil && l["releaseChannel"] == "Stable", ""
	})
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("stop: %v", err)
	}
	// ReleaseOnCancel: the next replica need not wait out the Lease.
	lease, err = client.Typed().CoordinationV1().Leases("d8-system").Get(context.Background(), leaseName, metav1.GetOptions{})
	if err != nil || (lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "") {
		t.Errorf("after stop the Lease is still held: %v %v", lease.Spec.HolderIdentity, err)
	}
}

func object(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	js, err := sigsyaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	o := &unstructured.Unstructured{}
	if err := o.UnmarshalJSON(js); err != nil {
		t.Fatal(err)
	}
	return o
}

// TestReleaseLeaseFromTheCurrentRecord: the fallback release (for when the elector's own one
// conflicts with a renewal that a cancel cut short) empties the holder only when it is ours,
// whatever resourceVersion the elector last saw.
func TestReleaseLeaseFromTheCurrentRecord(t *testing.T) {
	cluster := kubetest.Start(t, kubetest.Options{})
	client, err := kube.New(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leases := client.Typed().CoordinationV1().Leases(namespace)
	if _, err := client.Typed().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hold := func(holder string) {
		t.Helper()
		l, err := leases.Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil {
			l, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: leaseName}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
		}
		l.Spec.HolderIdentity = &holder
		// A second update, as a renewal the elector never saw the answer to.
		for range 2 {
			if l, err = leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	holder := func() string {
		t.Helper()
		l, err := leases.Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}

	hold("pod-a.1")
	if err := releaseLease(client.Typed(), "pod-b.2"); err != nil {
		t.Fatal(err)
	}
	if h := holder(); h != "pod-a.1" {
		t.Errorf("another holder's Lease released: holder %q", h)
	}
	if err := releaseLease(client.Typed(), "pod-a.1"); err != nil {
		t.Fatal(err)
	}
	if h := holder(); h != "" {
		t.Errorf("own Lease not released: holder %q", h)
	}
}
