package preflight

import (
	"context"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// These run ProbeRegistry against real HTTP(S) servers on loopback, dialling directly (in
// production the dial goes through the first master's SSH connection; the rig test covers that).

const (
	regUser     = "puller"
	regPassword = "s3cret-pw-value"
)

func basicAuthRegistry() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/" {
			http.NotFound(w, r)
			return
		}
		u, p, ok := r.BasicAuth()
		if !ok || u != regUser || p != regPassword {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

// tokenRegistry answers /v2/ with a Bearer challenge pointing at its own /token endpoint.
func tokenRegistry(realm func() string, scopes *[]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/":
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm()+`",service="test-registry"`)
			w.WriteHeader(http.StatusUnauthorized)
		case "/token":
			*scopes = append(*scopes, r.URL.Query().Get("service")+" "+r.URL.Query().Get("scope"))
			u, p, ok := r.BasicAuth()
			if !ok || u != regUser || p != regPassword {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Write([]byte(`{"token":"x"}`))
		default:
			http.NotFound(w, r)
		}
	})
}

// quietTLSServer is httptest.NewTLSServer without the log line of every refused handshake.
func quietTLSServer(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	return srv
}

func caPEM(srv *httptest.Server) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}

func TestProbeRegistry(t *testing.T) {
	var d net.Dialer
	dial := d.DialContext
	ctx := context.Background()

	basicTLS := quietTLSServer(basicAuthRegistry())
	t.Cleanup(basicTLS.Close)
	basicHost := strings.TrimPrefix(basicTLS.URL, "https://")
	plain := httptest.NewServer(basicAuthRegistry())
	t.Cleanup(plain.Close)
	plainHost := strings.TrimPrefix(plain.URL, "http://")
	var scopes []string
	var tokenSrv *httptest.Server
	tokenSrv = quietTLSServer(tokenRegistry(func() string { return tokenSrv.URL + "/token" }, &scopes))
	t.Cleanup(tokenSrv.Close)
	tokenHost := strings.TrimPrefix(tokenSrv.URL, "https://")
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedHost := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name   string
		reg    Registry
		status Status
		want   []string
	}{
		{"basic auth ok", Registry{Repo: basicHost + "/dhctl", CA: caPEM(basicTLS), User: regUser, Password: regPassword}, StatusOK,
			[]string{"accepts the credentials of user \"puller\"", "from the first master"}},
		{"wrong password", Registry{Repo: basicHost + "/dhctl", CA: caPEM(basicTLS), User: regUser, Password: "wrong-pw"}, StatusFailed,
			[]string{"refused the credentials", "401"}},
		{"no credentials", Registry{Repo: basicHost, CA: caPEM(basicTLS)}, StatusFailed,
			[]string{"requires authentication", "registryDockerCfg has no credentials for " + basicHost}},
		{"unknown CA", Registry{Repo: basicHost, User: regUser, Password: regPassword}, StatusFailed,
			[]string{"TLS", "unknown authority", "registryCA"}},
		{"CA not PEM", Registry{Repo: basicHost, CA: "not a certificate"}, StatusFailed, []string{"registryCA holds no PEM"}},
		{"HTTPS to a plain HTTP server", Registry{Repo: plainHost, User: regUser, Password: regPassword}, StatusFailed,
			[]string{"does not speak TLS", "registryScheme: HTTP"}},
		{"plain HTTP registry", Registry{Repo: plainHost, Scheme: "http", User: regUser, Password: regPassword}, StatusOK, nil},
		{"unreachable", Registry{Repo: closedHost + "/x", CA: caPEM(basicTLS)}, StatusFailed,
			[]string{"not reachable from the first master", "refused"}},
		{"token auth ok", Registry{Repo: tokenHost + "/deckhouse/ce", CA: caPEM(tokenSrv), User: regUser, Password: regPassword}, StatusOK,
			[]string{"issued a pull token", "deckhouse/ce"}},
		{"token auth refused", Registry{Repo: tokenHost + "/deckhouse/ce", CA: caPEM(tokenSrv), User: regUser, Password: "nope"}, StatusFailed,
			[]string{"token endpoint", "refused the credentials"}},
		{"no imagesRepo", Registry{}, StatusFailed, []string{"imagesRepo is empty"}},
	} {
		got := ProbeRegistry(ctx, dial, tc.reg)
		expect(t, tc.name, got, tc.status, tc.want...)
		if strings.Contains(got.Message, regPassword) || strings.Contains(got.Message, "wrong-pw") {
			t.Errorf("%s: a password reached the message: %s", tc.name, got.Message)
		}
	}
	if len(scopes) == 0 || scopes[0] != "test-registry repository:deckhouse/ce:pull" {
		t.Errorf("token requests asked for %q, want service and pull scope of the repository", scopes)
	}
}

func TestParseChallenge(t *testing.T) {
	scheme, p := parseChallenge(`Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"`)
	if scheme != "bearer" || p["realm"] != "https://auth.example/token" || p["service"] != "registry.example" || p["scope"] != "repository:a/b:pull,push" {
		t.Errorf("got %q %v", scheme, p)
	}
	scheme, p = parseChallenge(`Basic realm=x`)
	if scheme != "basic" || p["realm"] != "x" {
		t.Errorf("got %q %v", scheme, p)
	}
}

func TestProxyFor(t *testing.T) {
	reg := Registry{Proxy: "http://user:pw@proxy.example:3128", NoProxy: []string{"127.0.0.1", ".corp.example", "internal.example", "10.0.0.0/8", ""}}
	for host, wantProxy := range map[string]bool{
		"registry.example:5000":     true,
		"127.0.0.1:5000":            false,
		"reg.corp.example":          false,
		"registry.internal.example": false,
		"internal.example:443":      false,
		"notinternal.example":       true,
		"10.1.2.3:5000":             false,
		"11.1.2.3:5000":             true,
		"registry.deckhouse.io:443": true,
	} {
		u, err := reg.proxyFor(host)
		if err != nil {
			t.Fatal(err)
		}
		if (u != nil) != wantProxy {
			t.Errorf("%s: proxy %v, want proxy=%v", host, u, wantProxy)
		}
	}
	if u, _ := (Registry{}).proxyFor("x:1"); u != nil {
		t.Error("proxy without one configured")
	}
	if _, err := (Registry{Proxy: "::not a url"}).proxyFor("x:1"); err == nil {
		t.Error("bad proxy URL accepted")
	}
}

// The probe goes through an HTTP CONNECT proxy when one applies, with the proxy's credentials.
func TestProbeRegistryThroughProxy(t *testing.T) {
	registry := quietTLSServer(basicAuthRegistry())
	t.Cleanup(registry.Close)
	var mu sync.Mutex
	var tunnels []string
	seen := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), tunnels...) }
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.Header.Get("Proxy-Authorization") == "" {
			w.WriteHeader(http.StatusProxyAuthRequired)
			return
		}
		mu.Lock()
		tunnels = append(tunnels, r.Host)
		mu.Unlock()
		upstream, err := net.Dial("tcp", r.Host)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			upstream.Close()
			return
		}
		go func() { io.Copy(upstream, buf); upstream.Close() }()
		io.Copy(conn, upstream)
		conn.Close()
	}))
	t.Cleanup(proxy.Close)
	var d net.Dialer
	host := strings.TrimPrefix(registry.URL, "https://")
	reg := Registry{Repo: host + "/dhctl", CA: caPEM(registry), User: regUser, Password: regPassword,
		Proxy: "http://proxyuser:proxypw@" + strings.TrimPrefix(proxy.URL, "http://")}
	got := ProbeRegistry(context.Background(), d.DialContext, reg)
	expect(t, "through proxy", got, StatusOK, "through the proxy", "accepts the credentials")
	if got := seen(); len(got) == 0 || got[0] != host {
		t.Errorf("proxy tunnels %v, want one to %s", got, host)
	}
	if strings.Contains(got.Message, "proxypw") {
		t.Error("the proxy password reached the message")
	}
	reg.NoProxy = []string{"127.0.0.1"}
	before := len(seen())
	expect(t, "noProxy", ProbeRegistry(context.Background(), d.DialContext, reg), StatusOK, "from the first master)")
	if got := seen(); len(got) != before {
		t.Errorf("noProxy host went through the proxy: %v", got)
	}
}

// A real registry (go-containerregistry's, in memory) behind basic auth and TLS: the images the
// nodes pull must be there, and a missing one is named with the fix.
func TestProbeRegistryImages(t *testing.T) {
	regHandler := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := quietTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != regUser || p != regPassword {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		regHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	present := host + "/dhctl/pause:3.10"
	ref, err := name.ParseReference(present)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(srv.Client().Transport), remote.WithAuth(&authn.Basic{Username: regUser, Password: regPassword})); err != nil {
		t.Fatal(err)
	}
	var d net.Dialer
	reg := Registry{Repo: host + "/dhctl", CA: caPEM(srv), User: regUser, Password: regPassword}

	reg.Images = []string{present, "other.example.com/deckhouse/ce:v1.70.3"}
	expect(t, "present", ProbeRegistry(context.Background(), d.DialContext, reg), StatusOK,
		"the 1 images the nodes pull are there", "other.example.com/deckhouse/ce:v1.70.3: on another registry, not checked")

	missing := host + "/dhctl/kube-apiserver:v1.33.13"
	reg.Images = []string{present, missing}
	expect(t, "missing", ProbeRegistry(context.Background(), d.DialContext, reg), StatusFailed,
		"1 of the 2 images the nodes pull are not in the registry: "+missing, "dhctl mirror push <bundle> "+host+"/dhctl", "nodeImagesRepo")
}
