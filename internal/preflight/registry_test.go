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
	"testing"
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
