package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// KindNotServedError: the API server does not serve the object's kind (yet): its CRD is missing
// or not established.
type KindNotServedError struct {
	GVK schema.GroupVersionKind
}

func (e *KindNotServedError) Error() string {
	return fmt.Sprintf("kind %s is not served by the API server (no CRD or API group provides it yet)", gvkString(e.GVK))
}

func gvkString(gvk schema.GroupVersionKind) string {
	return gvk.Kind + " " + gvk.GroupVersion().String()
}

// Ref names an object for messages: "Deployment d8-system/deckhouse", "NodeGroup master".
func Ref(obj *unstructured.Unstructured) string {
	if ns := obj.GetNamespace(); ns != "" {
		return obj.GetKind() + " " + ns + "/" + obj.GetName()
	}
	return obj.GetKind() + " " + obj.GetName()
}

// resourceFor maps obj's kind to its resource, resetting the cached discovery once when the kind
// is unknown (a CRD may have been created since it was read). It defaults the namespace of a
// namespaced object without one to "default", as kubectl does.
func (c *Client) resourceFor(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	if gvk.Kind == "" || gvk.Version == "" {
		return nil, fmt.Errorf("%s: want apiVersion and kind", Ref(obj))
	}
	mapping, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		c.mapper.Reset()
		mapping, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if meta.IsNoMatchError(err) {
		return nil, &KindNotServedError{GVK: gvk}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: discovering its resource: %w", Ref(obj), err)
	}
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		if obj.GetNamespace() != "" {
			return nil, fmt.Errorf("%s: %s is cluster-scoped: remove metadata.namespace", Ref(obj), gvk.Kind)
		}
		return c.dynamic.Resource(mapping.Resource), nil
	}
	if obj.GetNamespace() == "" {
		obj.SetNamespace("default")
	}
	return c.dynamic.Resource(mapping.Resource).Namespace(obj.GetNamespace()), nil
}

// Apply creates or updates obj by server-side apply with the field manager "dhctl" (forcing
// conflicts: dhctl owns what it applies). Applying an unchanged object changes nothing, not even
// its resourceVersion. A kind the server does not serve gives a *KindNotServedError.
func (c *Client) Apply(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	if obj.GetName() == "" {
		return nil, fmt.Errorf("%s: want metadata.name", Ref(obj))
	}
	res, err := c.resourceFor(obj)
	if err != nil {
		return nil, err
	}
	out, err := res.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return nil, fmt.Errorf("applying %s: %w", Ref(obj), err)
	}
	return out, nil
}

// Get reads the live state of obj (matched by kind, namespace and name).
func (c *Client) Get(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	res, err := c.resourceFor(obj.DeepCopy())
	if err != nil {
		return nil, err
	}
	return res.Get(ctx, obj.GetName(), metav1.GetOptions{})
}

// applyRank orders kinds so that what others depend on comes first: CRDs, namespaces, then
// identities and configuration, then workloads, then everything else (custom resources).
func applyRank(obj *unstructured.Unstructured) int {
	switch obj.GetKind() {
	case "CustomResourceDefinition":
		return 0
	case "Namespace":
		return 1
	case "PriorityClass", "StorageClass":
		return 2
	case "ServiceAccount", "ClusterRole", "Role":
		return 3
	case "ClusterRoleBinding", "RoleBinding":
		return 4
	case "Secret", "ConfigMap":
		return 5
	case "Service":
		return 6
	case "Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "Pod":
		return 7
	}
	if obj.GroupVersionKind().Group == "" || strings.HasSuffix(obj.GroupVersionKind().Group, ".k8s.io") ||
		!strings.Contains(obj.GroupVersionKind().Group, ".") {
		return 8 // other built-in kinds
	}
	return 9 // custom resources last: their CRDs may be above
}

// SortForApply orders objects for creation (see applyRank), keeping the input order within a rank.
func SortForApply(objs []*unstructured.Unstructured) {
	sort.SliceStable(objs, func(i, j int) bool { return applyRank(objs[i]) < applyRank(objs[j]) })
}

// ApplyOptions bound ApplyAll.
type ApplyOptions struct {
	// Timeout bounds the wait for kinds that are not served yet; 0 means no waiting: a missing
	// kind fails at once.
	Timeout time.Duration
	// Interval is the longest pause between attempts (they start at 250 ms and double, since a
	// CRD applied in the same batch is usually served within a second); 0 means 2 s.
	Interval time.Duration
	// Progress, if set, is told about objects still waiting for their kind.
	Progress func(waiting []string)
}

// ApplyAll applies objs in dependency order (SortForApply). Objects whose kind is not served yet
// (a CRD arriving later, from these objects or from a controller) and transient server errors
// are retried until opts.Timeout; invalid objects fail at once. It returns the applied objects
// as the server stored them, in the order applied.
func (c *Client) ApplyAll(ctx context.Context, objs []*unstructured.Unstructured, opts ApplyOptions) ([]*unstructured.Unstructured, error) {
	interval := opts.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	pending := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		pending[i] = o.DeepCopy()
	}
	SortForApply(pending)
	deadline := time.Now().Add(opts.Timeout)
	pause := min(250*time.Millisecond, interval)
	var applied []*unstructured.Unstructured
	lastErr := map[*unstructured.Unstructured]error{}
	for {
		var still []*unstructured.Unstructured
		for _, obj := range pending {
			out, err := c.Apply(ctx, obj)
			if err == nil {
				applied = append(applied, out)
				delete(lastErr, obj)
				continue
			}
			if ctx.Err() != nil {
				return applied, fmt.Errorf("applying %s: %w", Ref(obj), ctx.Err())
			}
			if permanent(err) {
				return applied, err
			}
			lastErr[obj] = err
			still = append(still, obj)
		}
		pending = still
		if len(pending) == 0 {
			return applied, nil
		}
		if !time.Now().Before(deadline) {
			return applied, notAppliedError(pending, lastErr, opts.Timeout)
		}
		if opts.Progress != nil {
			names := make([]string, len(pending))
			for i, o := range pending {
				names[i] = Ref(o)
			}
			opts.Progress(names)
		}
		select {
		case <-ctx.Done():
			return applied, fmt.Errorf("waiting to apply %d objects: %w", len(pending), ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, interval)
	}
}

// permanent reports errors retrying cannot fix: the object itself is wrong.
func permanent(err error) bool {
	var kind *KindNotServedError
	if errors.As(err, &kind) {
		return false
	}
	return apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsForbidden(err) ||
		apierrors.IsUnauthorized(err) || apierrors.IsMethodNotSupported(err) || apierrors.IsNotAcceptable(err) ||
		!isAPIError(err)
}

// isAPIError reports errors worth retrying: answers of the API server, and network failures
// (connection refused while it restarts, a reset or dropped tunnel, a timeout).
func isAPIError(err error) bool {
	var kind *KindNotServedError
	if errors.As(err, &kind) {
		return true
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func notAppliedError(pending []*unstructured.Unstructured, lastErr map[*unstructured.Unstructured]error, timeout time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d objects could not be applied within %s:", len(pending), timeout)
	missing := false
	for _, o := range pending {
		fmt.Fprintf(&b, "\n  - %s: %v", Ref(o), lastErr[o])
		var kind *KindNotServedError
		if errors.As(lastErr[o], &kind) {
			missing = true
		}
	}
	if missing {
		b.WriteString("\nA kind that is never served needs its CustomResourceDefinition: add it to --resources, enable the module that provides it, or raise the timeout if it is on its way.")
	}
	return errors.New(b.String())
}
