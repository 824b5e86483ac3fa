package destroy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dhctl-dev/dhctl/internal/kube"
)

// deleteResources removes, in order, what would keep cloud objects alive or fight the teardown:
// the platform controller (it would recreate what is deleted), PodDisruptionBudgets (they block
// evictions), Services of type LoadBalancer and PersistentVolumeClaims (their load balancers and
// volumes live outside the cluster), waiting, bounded, for each to go.
func deleteResources(ctx context.Context, o Options, k kubernetes.Interface, lock *kube.Lock) error {
	check := func() error {
		if lock == nil {
			return nil
		}
		select {
		case err := <-lock.Lost():
			return fmt.Errorf("destroy stopped: %w (run it again once no other run holds the lock)", err)
		default:
			return nil
		}
	}
	bg := metav1.DeletePropagationForeground
	del := metav1.DeleteOptions{PropagationPolicy: &bg}
	steps := []struct {
		what string
		run  func(ctx context.Context) error
	}{
		{"the platform controller (Deployment d8-system/deckhouse)", func(ctx context.Context) error {
			err := k.AppsV1().Deployments("d8-system").Delete(ctx, "deckhouse", del)
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			return waitGone(ctx, o.ResourcesTimeout, "Deployment d8-system/deckhouse", func(ctx context.Context) ([]string, error) {
				_, err := k.AppsV1().Deployments("d8-system").Get(ctx, "deckhouse", metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return nil, nil
				}
				return []string{"deckhouse"}, err
			})
		}},
		{"PodDisruptionBudgets", func(ctx context.Context) error {
			list, err := k.PolicyV1().PodDisruptionBudgets("").List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, p := range list.Items {
				if err := k.PolicyV1().PodDisruptionBudgets(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					return err
				}
			}
			return nil
		}},
		{"Services of type LoadBalancer", func(ctx context.Context) error {
			lbs := func(ctx context.Context) ([]corev1.Service, error) {
				list, err := k.CoreV1().Services("").List(ctx, metav1.ListOptions{})
				if err != nil {
					return nil, err
				}
				var out []corev1.Service
				for _, s := range list.Items {
					if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
						out = append(out, s)
					}
				}
				return out, nil
			}
			list, err := lbs(ctx)
			if err != nil {
				return err
			}
			for _, s := range list {
				if err := k.CoreV1().Services(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					return err
				}
			}
			return waitGone(ctx, o.ResourcesTimeout, "Services of type LoadBalancer", func(ctx context.Context) ([]string, error) {
				left, err := lbs(ctx)
				var names []string
				for _, s := range left {
					names = append(names, s.Namespace+"/"+s.Name)
				}
				return names, err
			})
		}},
		{"PersistentVolumeClaims and their provisioned volumes", func(ctx context.Context) error {
			pvcs, err := k.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, p := range pvcs.Items {
				if err := k.CoreV1().PersistentVolumeClaims(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					return err
				}
			}
			return waitGone(ctx, o.ResourcesTimeout, "PersistentVolumeClaims and PersistentVolumes to be deleted", func(ctx context.Context) ([]string, error) {
				var left []string
				pvcs, err := k.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
				if err != nil {
					return nil, err
				}
				for _, p := range pvcs.Items {
					left = append(left, "PersistentVolumeClaim "+p.Namespace+"/"+p.Name)
				}
				pvs, err := k.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
				if err != nil {
					return nil, err
				}
				for _, pv := range pvs.Items {
					if pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete {
						left = append(left, "PersistentVolume "+pv.Name)
					}
				}
				return left, nil
			})
		}},
	}
	for _, s := range steps {
		if err := check(); err != nil {
			return err
		}
		o.Log.Info("deleting", "what", s.what)
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("deleting %s: %w (run destroy again; --skip-resources skips this part)", s.what, err)
		}
		fmt.Fprintf(o.Out, "deleted %s\n", s.what)
	}
	return check()
}

// waitGone polls left until it lists nothing, bounded by timeout; the error names what is left.
func waitGone(ctx context.Context, timeout time.Duration, what string, left func(ctx context.Context) ([]string, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last []string
	var lastErr error
	for {
		names, err := left(ctx)
		if err == nil && len(names) == 0 {
			return nil
		}
		last, lastErr = names, err
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("waited %v for %s to go; still there: %s (last error: %v)", timeout, what, strings.Join(last, ", "), lastErr)
			}
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
