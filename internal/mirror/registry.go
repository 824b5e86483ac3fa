package mirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry says how to reach a registry: credentials, the CA that signed its certificate, plain
// HTTP only when asked, or a transport of the caller's (one that dials inside a network namespace).
type Registry struct {
	User     string
	Password string // secret: never logged
	CACert   []byte // PEM, trusted beside the system's roots
	Insecure bool   // plain HTTP
	// Transport, when set, is used as is (CACert is then the transport's business).
	Transport http.RoundTripper
}

func (r Registry) transport() (http.RoundTripper, error) {
	if r.Transport != nil {
		return r.Transport, nil
	}
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.TLSHandshakeTimeout = 30 * time.Second
	t.ResponseHeaderTimeout = 2 * time.Minute
	if len(r.CACert) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(r.CACert) {
			return nil, fmt.Errorf("the registry CA holds no PEM certificate")
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return t, nil
}

func (r Registry) auth() authn.Authenticator {
	if r.User == "" && r.Password == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.User, Password: r.Password}
}

func (r Registry) options(ctx context.Context, t http.RoundTripper) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(t), remote.WithAuth(r.auth()),
		remote.WithRetryBackoff(remote.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 3})}
}

func (r Registry) reference(ref string) (name.Reference, error) {
	opts := []name.Option{name.StrictValidation}
	if r.Insecure {
		opts = append(opts, name.Insecure)
	}
	return name.ParseReference(ref, opts...)
}

// keychain hands one authenticator to every registry (remote.CheckPushPermission wants one).
type keychain struct{ a authn.Authenticator }

func (k keychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }
