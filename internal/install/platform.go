package install

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dhctl-dev/dhctl/internal/config"
	"github.com/dhctl-dev/dhctl/internal/kube"
)

// The objects through which dhctl and the platform controller coordinate, named as Deckhouse's
// installer and controller name them.
const (
	platformNamespace = "d8-system"
	platformName      = "deckhouse"
	// DeckhouseModuleConfig is the platform's own ModuleConfig (bundle, logLevel, releaseChannel).
	DeckhouseModuleConfig = "deckhouse"
	// BootstrapLockConfigMap holds the controller's queue while dhctl creates the ModuleConfigs:
	// a controller starting earlier would converge modules without their configuration.
	BootstrapLockConfigMap = "deckhouse-bootstrap-lock"
	// LeaderLease names the controller replica that works; its holder is "<pod>.<suffix>".
	LeaderLease = "deckhouse-leader-election"

	// Log messages of the controller (JSON lines, field "msg") that dhctl follows.
	logModuleReady  = "ModuleRun success, module is ready"
	logConvergeDone = "ConvergeModules task done"

	// platformLogLimit bounds one read of the controller's log.
	platformLogLimit = 4 << 20
	// maxPlatformErrors bounds how many distinct error lines of the controller are shown.
	maxPlatformErrors = 10
)

// deckhouseModuleConfig is the deckhouse ModuleConfig as the install first creates it: the
// configuration's own (or an empty one) with bundle and logLevel defaulted and releaseChannel
// held back (install/release-channel sets it once the platform is ready).
func (in *Installer) deckhouseModuleConfig() *unstructured.Unstructured {
	settings := map[string]any{}
	version := int64(1)
	enabled := true
	for _, mc := range in.opts.Cluster.ModuleConfigs {
		if mc.Metadata.Name != DeckhouseModuleConfig {
			continue
		}
		settings = runtimeCopy(mc.Spec.Settings)
		if settings == nil {
			settings = map[string]any{}
		}
		if mc.Spec.Version != 0 {
			version = int64(mc.Spec.Version)
		}
		if mc.Spec.Enabled != nil {
			enabled = *mc.Spec.Enabled
		}
	}
	delete(settings, "releaseChannel")
	settings["bundle"] = in.values.Platform.Bundle
	settings["logLevel"] = in.values.Platform.LogLevel
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "deckhouse.io/v1alpha1",
		"kind":       config.KindModuleConfig,
		"metadata":   map[string]any{"name": DeckhouseModuleConfig},
		"spec":       map[string]any{"enabled": enabled, "version": version, "settings": settings},
	}}
}

func bootstrapLock() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": BootstrapLockConfigMap, "namespace": platformNamespace,
			"labels": map[string]any{"heritage": "deckhouse"}},
	}}
}

func platformDeployment() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": platformName, "namespace": platformNamespace},
	}}
}

// platformPhase applies the platform's objects the way Deckhouse's installer orders them: while
// the controller's Deployment does not exist yet, the bootstrap lock is created first, so the
// controller waits until every ModuleConfig exists; the lock goes once they do. A run killed in
// between leaves the lock, and the re-run removes it.
type platformPhase struct{ applyPhase }

func (p *platformPhase) Run(ctx context.Context) error {
	c, err := p.in.client(ctx)
	if err != nil {
		return err
	}
	objs, err := p.objects()
	if err != nil {
		return err
	}
	switch _, err := c.Get(ctx, platformDeployment()); {
	case apierrors.IsNotFound(err):
		lock := []*unstructured.Unstructured{bootstrapLock()}
		for _, o := range objs {
			if o.GetKind() == "Namespace" && o.GetName() == platformNamespace {
				lock = append(lock, o)
			}
		}
		if _, err := c.ApplyAll(ctx, lock, kube.ApplyOptions{Timeout: crdTimeout}); err != nil {
			return fmt.Errorf("creating the bootstrap lock ConfigMap: %w", err)
		}
	case err != nil:
		return fmt.Errorf("reading %s: %w", kube.Ref(platformDeployment()), err)
	}
	if err := p.in.keepReleaseChannel(ctx, c, objs); err != nil {
		return err
	}
	applied, err := c.ApplyAll(ctx, objs, kube.ApplyOptions{Timeout: crdTimeout, Progress: throttled(p.in.log, "waiting for kinds to be served")})
	if err != nil {
		return err
	}
	err = c.Typed().CoreV1().ConfigMaps(platformNamespace).Delete(ctx, BootstrapLockConfigMap, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing the bootstrap lock ConfigMap %s/%s (the platform waits for it to go): %w", platformNamespace, BootstrapLockConfigMap, err)
	}
	p.in.log.Info("applied", "phase", p.name, "objects", len(applied), "image", p.in.values.Platform.Image)
	return nil
}

// keepReleaseChannel: once install/release-channel set the channel, applying the deckhouse
// ModuleConfig again (a re-run, a changed configuration) must not take it away.
func (in *Installer) keepReleaseChannel(ctx context.Context, c *kube.Client, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		if o.GetKind() != config.KindModuleConfig || o.GetName() != DeckhouseModuleConfig {
			continue
		}
		live, err := c.Get(ctx, o)
		if err != nil {
			var notServed *kube.KindNotServedError
			if apierrors.IsNotFound(err) || errors.As(err, &notServed) {
				return nil
			}
			return fmt.Errorf("reading %s: %w", kube.Ref(o), err)
		}
		if ch, ok, _ := unstructured.NestedString(live.Object, "spec", "settings", "releaseChannel"); ok && ch != "" {
			return unstructured.SetNestedField(o.Object, ch, "spec", "settings", "releaseChannel")
		}
	}
	return nil
}

// releaseChannelPhase sets the deckhouse ModuleConfig's releaseChannel once the platform is
// ready: earlier, the controller would update itself to the channel's version mid-bootstrap.
type releaseChannelPhase struct{ in *Installer }

// PhaseReleaseChannel is install/release-channel.
const PhaseReleaseChannel = "release-channel"

func (p *releaseChannelPhase) Name() string { return PhaseReleaseChannel }
func (p *releaseChannelPhase) Title() string {
	return "Set the platform's release channel now that it is ready"
}

func (p *releaseChannelPhase) Inputs() (any, error) {
	return p.in.values.Platform.ReleaseChannel, nil
}

func (p *releaseChannelPhase) ShouldRun(context.Context) (bool, string, error) {
	if p.in.values.Platform.ReleaseChannel == "" {
		return false, "the deckhouse ModuleConfig sets no releaseChannel", nil
	}
	return true, "", nil
}

func (p *releaseChannelPhase) object() *unstructured.Unstructured {
	mc := p.in.deckhouseModuleConfig()
	_ = unstructured.SetNestedField(mc.Object, p.in.values.Platform.ReleaseChannel, "spec", "settings", "releaseChannel")
	return mc
}

func (p *releaseChannelPhase) DryRun(context.Context) error {
	p.in.log.Info("would apply", "phase", PhaseReleaseChannel, "object", kube.Ref(p.object()), "releaseChannel", p.in.values.Platform.ReleaseChannel)
	return nil
}

func (p *releaseChannelPhase) Run(ctx context.Context) error {
	c, err := p.in.client(ctx)
	if err != nil {
		return err
	}
	if _, err := c.ApplyAll(ctx, []*unstructured.Unstructured{p.object()}, kube.ApplyOptions{Timeout: crdTimeout}); err != nil {
		return err
	}
	p.in.log.Info("release channel set", "moduleConfig", DeckhouseModuleConfig, "releaseChannel", p.in.values.Platform.ReleaseChannel)
	return nil
}

// platformLogLine is the part of the controller's JSON log lines dhctl reads.
type platformLogLine struct {
	Level  string `json:"level"`
	Msg    string `json:"msg"`
	Module string `json:"module"`
	Output string `json:"output"`
}

// platformWatch follows the working controller replica: which pod it is, what its log said so
// far (read incrementally, by the kubelet's timestamps), and whether its first converge is done.
type platformWatch struct {
	in        *Installer
	c         *kube.Client
	pod       string
	last      time.Time // timestamp of the last log line read
	converged bool
	modules   []string
	errors    map[string]bool
}

// poll says whether the platform is done, as Deckhouse's installer means it: the leader pod
// Running and Ready, and its log reporting that the first converge of the modules finished.
func (w *platformWatch) poll(ctx context.Context) (done bool, why string, err error) {
	pod, why, err := w.leaderPod(ctx)
	if err != nil || pod == nil {
		return false, why, err
	}
	if pod.Name != w.pod {
		if w.pod != "" {
			w.in.log.Info("the platform controller's working pod changed", "from", w.pod, "to", pod.Name)
		}
		w.pod, w.last, w.converged, w.modules = pod.Name, time.Time{}, false, nil
	}
	if pod.Status.Phase != corev1.PodRunning {
		return false, fmt.Sprintf("pod %s is %s", pod.Name, phaseOf(pod)), nil
	}
	if err := w.readLog(ctx, pod); err != nil {
		return false, fmt.Sprintf("pod %s: reading its log: %v", pod.Name, err), nil
	}
	for _, cond := range pod.Status.Conditions {
		if cond.Status != corev1.ConditionTrue {
			return false, fmt.Sprintf("pod %s: condition %s is %s %s", pod.Name, cond.Type, cond.Status, cond.Message), nil
		}
	}
	if !w.converged {
		return false, fmt.Sprintf("pod %s is Ready; its log has not reported %q yet (%d modules ready)", pod.Name, logConvergeDone, len(w.modules)), nil
	}
	return true, "", nil
}

func phaseOf(pod *corev1.Pod) string {
	for _, s := range pod.Status.ContainerStatuses {
		if s.State.Waiting != nil && s.State.Waiting.Reason != "" {
			return string(pod.Status.Phase) + " (" + s.Name + ": " + s.State.Waiting.Reason + ")"
		}
	}
	if pod.Status.Phase == "" {
		return "not scheduled yet"
	}
	return string(pod.Status.Phase)
}

// leaderPod is the controller's pod: the only one, or with several (a rollout) the holder of the
// leader Lease.
func (w *platformWatch) leaderPod(ctx context.Context) (*corev1.Pod, string, error) {
	pods, err := w.c.Typed().CoreV1().Pods(platformNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + platformName})
	if err != nil {
		return nil, "", fmt.Errorf("listing the platform's pods: %w", err)
	}
	switch len(pods.Items) {
	case 0:
		return nil, "no pod with label app=deckhouse in d8-system yet", nil
	case 1:
		return &pods.Items[0], "", nil
	}
	lease, err := w.c.Typed().CoordinationV1().Leases(platformNamespace).Get(ctx, LeaderLease, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Sprintf("%d platform pods and no leader yet (Lease %s/%s)", len(pods.Items), platformNamespace, LeaderLease), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading the Lease %s/%s: %w", platformNamespace, LeaderLease, err)
	}
	holder := ""
	if lease.Spec.HolderIdentity != nil {
		holder, _, _ = strings.Cut(*lease.Spec.HolderIdentity, ".")
	}
	for i := range pods.Items {
		if pods.Items[i].Name == holder {
			return &pods.Items[i], "", nil
		}
	}
	return nil, fmt.Sprintf("%d platform pods; the leader Lease names %q, none of them", len(pods.Items), holder), nil
}

// readLog reads the log lines written since the last read and reports what they say.
func (w *platformWatch) readLog(ctx context.Context, pod *corev1.Pod) error {
	opts := &corev1.PodLogOptions{Container: platformName, Timestamps: true, LimitBytes: ptrTo(int64(platformLogLimit))}
	if !w.last.IsZero() {
		since := metav1.NewTime(w.last.Truncate(time.Second))
		opts.SinceTime = &since
	}
	data, err := w.c.Typed().CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, opts).DoRaw(ctx)
	if err != nil {
		return err
	}
	w.consume(data)
	return nil
}

// consume reads log lines as the kubelet gives them with timestamps ("<RFC3339Nano> <line>"),
// skipping those read before.
func (w *platformWatch) consume(data []byte) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), platformLogLimit)
	for sc.Scan() {
		stamp, line, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil || !t.After(w.last) {
			continue // read before (SinceTime has whole seconds)
		}
		w.last = t
		w.observe(line)
	}
}

// observe handles one log line: modules as they become ready, the end of the first converge,
// and errors (shown once each, a bounded number of them).
func (w *platformWatch) observe(line string) {
	var l platformLogLine
	if json.Unmarshal([]byte(line), &l) != nil {
		return // not a JSON line: a real controller prints a few at start
	}
	switch {
	case l.Msg == logModuleReady && l.Module != "":
		w.modules = append(w.modules, l.Module)
		w.in.log.Info("platform module ready", "module", l.Module)
	case l.Msg == logConvergeDone && !w.converged:
		w.converged = true
		w.in.log.Info("the platform finished its first converge", "pod", w.pod, "modules", len(w.modules))
	case strings.EqualFold(l.Level, "error") || l.Output == "stderr":
		if w.errors == nil {
			w.errors = map[string]bool{}
		}
		if !w.errors[l.Msg] && len(w.errors) < maxPlatformErrors {
			w.errors[l.Msg] = true
			w.in.log.Warn("the platform controller logged an error", "module", l.Module, "msg", l.Msg)
		}
	}
}

// wait polls until done or the deadline of ctx, then says why it is not done, with the
// Deployment's diagnosis (pods, events, log tail).
func (w *platformWatch) wait(ctx context.Context, timeout time.Duration) error {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastShown time.Time
	for {
		done, why, err := w.poll(wctx)
		if err != nil && wctx.Err() == nil {
			return err
		}
		if err != nil {
			why = err.Error()
		}
		if done {
			return nil
		}
		if time.Since(lastShown) >= progressEvery {
			lastShown = time.Now()
			w.in.log.Info("waiting for the platform", "reason", why)
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for the platform: %w", ctx.Err())
			}
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
			defer dcancel()
			if live, err := w.c.Get(dctx, platformDeployment()); err == nil {
				if ready, depWhy, err := kube.Readiness(live); err == nil && !ready {
					why = depWhy + "; " + why
				}
			}
			nr := kube.NotReady{Object: kube.Ref(platformDeployment()), Reason: why, Detail: w.c.Explain(dctx, platformDeployment())}
			if len(w.modules) > 0 {
				sort.Strings(w.modules)
				nr.Detail = append([]string{"modules ready so far: " + strings.Join(w.modules, ", ")}, nr.Detail...)
			}
			return &kube.NotReadyError{Waited: time.Since(start), Objects: []kube.NotReady{nr}}
		case <-time.After(2 * time.Second):
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
