// Package kube is dhctl's access to a cluster's API server: a client-go client reached directly
// (a kubeconfig) or through an SSH local port forward to the first master, idempotent
// server-side apply of any kind (built-in or CRD-backed) with the field manager "dhctl", and
// bounded waits that explain what is not ready and why.
package kube

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

// FieldManager owns every field dhctl applies.
const FieldManager = "dhctl"

// Client talks to one API server.
type Client struct {
	config  *rest.Config
	typed   kubernetes.Interface
	dynamic dynamic.Interface
	mapper  *restmapper.DeferredDiscoveryRESTMapper
	closer  func() error
	tunnel  *tunnel // nil for a direct client
}

// New builds a client from a REST config. The config is copied.
func New(cfg *rest.Config) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		// Installs send bursts of a few dozen objects; client-go's default 5 QPS throttles them.
		cfg.QPS, cfg.Burst = 50, 100
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "dhctl"
	}
	typed, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(typed.Discovery()))
	return &Client{config: cfg, typed: typed, dynamic: dyn, mapper: mapper}, nil
}

// FromKubeconfig builds a client for a cluster reachable directly (--kubeconfig): the file's
// current context.
func FromKubeconfig(path string) (*Client, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w (want a kubeconfig file, e.g. /etc/kubernetes/admin.conf of a master)", path, err)
	}
	return New(cfg)
}

// Typed is the typed clientset (Pods, Events, logs, ...).
func (c *Client) Typed() kubernetes.Interface { return c.typed }

// Dynamic is the dynamic client (any kind).
func (c *Client) Dynamic() dynamic.Interface { return c.dynamic }

// RESTMapper maps kinds to resources through discovery; Apply resets it when a kind is missing.
func (c *Client) RESTMapper() meta.ResettableRESTMapper { return c.mapper }

// Host is the API server URL the client uses.
func (c *Client) Host() string { return c.config.Host }

// RESTConfig is a copy of the client's configuration.
func (c *Client) RESTConfig() *rest.Config { return rest.CopyConfig(c.config) }

// Close releases what the client holds (the SSH tunnel, when there is one).
func (c *Client) Close() error {
	if c.closer != nil {
		return c.closer()
	}
	return nil
}

// WithCloser makes Close also run closer (after what the client closed already): a client
// handed out with the SSH connection it tunnels through owns it.
func (c *Client) WithCloser(closer func() error) *Client {
	prev := c.closer
	c.closer = func() error {
		var err error
		if prev != nil {
			err = prev()
		}
		return errors.Join(err, closer())
	}
	return c
}
