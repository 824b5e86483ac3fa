package preflight

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Registry is the registry the nodes will pull from (InitConfiguration deckhouse.*).
type Registry struct {
	// Repo is imagesRepo: host[:port]/path.
	Repo string
	// Scheme is "https" or "http".
	Scheme string
	// CA is the PEM of the CA to trust ("" = the system's roots).
	CA string
	// User and Password are the credentials for the registry's host from registryDockerCfg
	// ("" = anonymous). They go only into request headers, never into a log, an error, a command
	// line or a file.
	User, Password string
	// Images are the references the nodes will pull (node images, the platform); those on this
	// registry's host are checked to exist, so that a registry without them (a Deckhouse
	// registry the node images were never pushed to) fails here, before a machine is touched.
	Images []string
	// Proxy is the proxy URL the nodes use for this registry's scheme (ClusterConfiguration
	// proxy.httpProxy/httpsProxy; may hold credentials: secret), "" for none. NoProxy are
	// the proxy.noProxy entries (host names, .domain suffixes, IPs, CIDRs).
	Proxy   string
	NoProxy []string
}

// proxyFor returns the proxy to reach host through, or nil when none applies (no proxy, or host
// matches a noProxy entry), the way containerd on the nodes will choose.
func (r Registry) proxyFor(host string) (*url.URL, error) {
	if r.Proxy == "" {
		return nil, nil
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.ToLower(name)
	ip, ipErr := netip.ParseAddr(name)
	for _, e := range r.NoProxy {
		e = strings.ToLower(strings.TrimSpace(e))
		switch {
		case e == "":
		case e == "*", e == name, e == host:
			return nil, nil
		case strings.HasPrefix(e, ".") && strings.HasSuffix(name, e):
			return nil, nil
		case !strings.HasPrefix(e, ".") && strings.HasSuffix(name, "."+e):
			return nil, nil
		case ipErr == nil && strings.Contains(e, "/"):
			if p, err := netip.ParsePrefix(e); err == nil && p.Contains(ip) {
				return nil, nil
			}
		}
	}
	u, err := url.Parse(r.Proxy)
	if err != nil || u.Host == "" {
		return nil, errors.New("ClusterConfiguration proxy: the proxy URL for the registry is not a URL such as http://proxy.example:3128")
	}
	return u, nil
}

// registryTimeout bounds the whole registry check (a couple of HTTP round trips).
const registryTimeout = 30 * time.Second

// DialFunc opens a TCP connection; for the registry check it dials from the first master.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// ProbeRegistry asks <registry>/v2/ (the Docker registry API's version check) whether it
// answers and accepts the credentials. The TCP connections are opened BY THE FIRST MASTER
// (dial is ssh.Client.DialContext: an SSH direct-tcpip channel), so reachability, DNS and
// routing are the master's; TLS and HTTP run here, so nothing has to be installed on the master
// (no curl) and the credentials never reach it. dhctl needs SSH TCP forwarding on the first
// master anyway (API server tunnel, packages endpoint), so this adds no requirement.
//
// The CA is the configured registryCA or, without one, this machine's trust roots (containerd
// on the nodes is given registryCA the same way).
func ProbeRegistry(ctx context.Context, dial DialFunc, reg Registry) Result {
	ctx, cancel := context.WithTimeout(ctx, registryTimeout)
	defer cancel()
	r := probeAccess(ctx, dial, reg)
	if r.Status != StatusOK || len(reg.Images) == 0 {
		return r
	}
	return probeImages(ctx, dial, reg, r)
}

// registryTransport is how the checks talk to the registry: TCP from the first master (dial),
// TLS with registryCA or this machine's roots, the nodes' proxy when one applies. A non-empty
// string is the problem with the configuration.
func registryTransport(dial DialFunc, reg Registry, host string) (*http.Transport, *url.URL, string) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if reg.CA != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(reg.CA)) {
			return nil, nil, "InitConfiguration deckhouse.registryCA holds no PEM certificate; paste the registry's CA certificate there"
		}
		tlsConfig.RootCAs = pool
	}
	proxy, err := reg.proxyFor(host)
	if err != nil {
		return nil, nil, err.Error()
	}
	return &http.Transport{
		// Also the proxy, when one applies, is dialled from the master: its route is checked.
		DialContext:         dial,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableKeepAlives:   true,
		Proxy:               func(*http.Request) (*url.URL, error) { return proxy, nil },
	}, proxy, ""
}

func probeAccess(ctx context.Context, dial DialFunc, reg Registry) Result {
	host, path, _ := strings.Cut(strings.TrimSuffix(reg.Repo, "/"), "/")
	if host == "" {
		return fail("InitConfiguration deckhouse.imagesRepo is empty: nodes pull every image from it; set it")
	}
	scheme := strings.ToLower(reg.Scheme)
	if scheme == "" {
		scheme = "https"
	}
	tr, proxy, problem := registryTransport(dial, reg, host)
	if problem != "" {
		return fail("%s", problem)
	}
	client := &http.Client{
		Transport: tr,
		Timeout:   registryTimeout,
		// Registries redirect blobs, never /v2/ or the token endpoint: do not follow anything.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	base := scheme + "://" + host
	where := fmt.Sprintf("%s (from the first master)", base)
	if proxy != nil {
		where = fmt.Sprintf("%s (from the first master through the proxy %s)", base, proxy.Host)
	}

	resp, err := get(ctx, client, base+"/v2/", nil)
	if err != nil {
		return registryTransportError(where, host, scheme, err)
	}
	challenge := resp.Header.Get("Www-Authenticate")
	switch {
	case resp.StatusCode == http.StatusOK:
		return ok("%s answers /v2/ without authentication", where)
	case resp.StatusCode != http.StatusUnauthorized:
		return fail("%s answered /v2/ with %s: not a Docker registry API endpoint? Check imagesRepo", where, resp.Status)
	}
	authScheme, params := parseChallenge(challenge)
	hasCreds := reg.User != "" || reg.Password != ""
	if !hasCreds {
		return fail("%s requires authentication (401) and registryDockerCfg has no credentials for %s; add them to InitConfiguration deckhouse.registryDockerCfg", where, host)
	}
	setBasic := func(r *http.Request) { r.SetBasicAuth(reg.User, reg.Password) }
	switch authScheme {
	case "basic":
		resp, err := get(ctx, client, base+"/v2/", setBasic)
		if err != nil {
			return registryTransportError(where, host, scheme, err)
		}
		switch resp.StatusCode {
		case http.StatusOK:
			return ok("%s accepts the credentials of user %q", where, reg.User)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fail("%s refused the credentials of user %q (%s); fix the user or password in registryDockerCfg", where, reg.User, resp.Status)
		}
		return fail("%s answered /v2/ with credentials: %s", where, resp.Status)
	case "bearer":
		realm := params["realm"]
		u, err := url.Parse(realm)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fail("%s asks for a token from realm %q, which is not an http(s) URL", where, realm)
		}
		q := u.Query()
		if s := params["service"]; s != "" {
			q.Set("service", s)
		}
		if path != "" {
			q.Set("scope", "repository:"+path+":pull")
		}
		u.RawQuery = q.Encode()
		resp, err := get(ctx, client, u.String(), setBasic)
		tokenWhere := fmt.Sprintf("token endpoint %s://%s%s (from the first master)", u.Scheme, u.Host, u.Path)
		if err != nil {
			return registryTransportError(tokenWhere, u.Hostname(), u.Scheme, err)
		}
		switch resp.StatusCode {
		case http.StatusOK:
			return ok("%s issued a pull token for %q to user %q", tokenWhere, path, reg.User)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fail("%s refused the credentials of user %q (%s); fix the user or password in registryDockerCfg", tokenWhere, reg.User, resp.Status)
		}
		return fail("%s answered %s", tokenWhere, resp.Status)
	}
	return fail("%s asks for an unsupported authentication scheme %q", where, authScheme)
}

// probeImages asks for the manifest of every image on the registry's host (HEAD, with the
// registry's own authentication flow), after the access check passed (access says how).
func probeImages(ctx context.Context, dial DialFunc, reg Registry, access Result) Result {
	host, _, _ := strings.Cut(strings.TrimSuffix(reg.Repo, "/"), "/")
	tr, _, problem := registryTransport(dial, reg, host)
	if problem != "" {
		return fail("%s", problem)
	}
	var nameOpts []name.Option
	if strings.EqualFold(reg.Scheme, "http") {
		nameOpts = append(nameOpts, name.Insecure)
	}
	auth := authn.Anonymous
	if reg.User != "" || reg.Password != "" {
		auth = &authn.Basic{Username: reg.User, Password: reg.Password}
	}
	var missing, other []string
	checked := 0
	for _, img := range reg.Images {
		ref, err := name.ParseReference(img, nameOpts...)
		if err != nil {
			return fail("image reference %q does not parse: %v", img, err)
		}
		if !strings.EqualFold(ref.Context().RegistryStr(), host) {
			other = append(other, img) // another registry's (a full --platform-image): not checked here
			continue
		}
		checked++
		_, err = remote.Head(ref, remote.WithContext(ctx), remote.WithTransport(tr), remote.WithAuth(auth))
		var terr *transport.Error
		switch {
		case err == nil:
		case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
			missing = append(missing, img)
		default:
			return fail("%s: asking for the manifest of %s (from the first master): %v", host, img, err)
		}
	}
	if len(missing) > 0 {
		return fail("%s: %d of the %d images the nodes pull are not in the registry: %s; push them (dhctl mirror push <bundle> %s), or point nodeImagesRepo or the platform image at where they are",
			host, len(missing), checked, strings.Join(missing, ", "), reg.Repo)
	}
	msg := fmt.Sprintf("%s; the %d images the nodes pull are there", access.Message, checked)
	if len(other) > 0 {
		msg += fmt.Sprintf(" (%s: on another registry, not checked)", strings.Join(other, ", "))
	}
	return ok("%s", msg)
}

// get does one GET and drains the body (the status and headers are all the check needs).
func get(ctx context.Context, c *http.Client, u string, prepare func(*http.Request)) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if prepare != nil {
		prepare(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp, nil
}

// parseChallenge reads a WWW-Authenticate header: `Bearer realm="...",service="..."`.
func parseChallenge(h string) (scheme string, params map[string]string) {
	params = map[string]string{}
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	for rest != "" {
		rest = strings.TrimLeft(rest, " ,")
		k, v, found := strings.Cut(rest, "=")
		if !found {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if strings.HasPrefix(v, `"`) {
			end := strings.Index(v[1:], `"`)
			if end < 0 {
				params[k] = v[1:]
				break
			}
			params[k] = v[1 : end+1]
			rest = v[end+2:]
		} else {
			val, after, _ := strings.Cut(v, ",")
			params[k] = strings.TrimSpace(val)
			rest = after
		}
	}
	return strings.ToLower(scheme), params
}

// registryTransportError tells unreachable, TLS and timeout failures apart.
func registryTransportError(where, host, scheme string, err error) Result {
	var unknownCA x509.UnknownAuthorityError
	var hostnameErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	var verifyErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknownCA):
		return fail("%s: TLS: the certificate is signed by an unknown authority; put the registry's CA certificate into InitConfiguration deckhouse.registryCA", where)
	case errors.As(err, &hostnameErr):
		return fail("%s: TLS: the certificate is not valid for %s (%v); use the name the certificate was issued for in imagesRepo", where, host, hostnameErr)
	case errors.As(err, &invalid):
		return fail("%s: TLS: the certificate is invalid (%v); renew it, or check the master's clock", where, invalid)
	case errors.As(err, &verifyErr):
		return fail("%s: TLS: certificate verification failed (%v); check registryCA", where, verifyErr.Err)
	case errors.As(err, &recordErr) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fail("%s: TLS: the server does not speak TLS; if the registry is plain HTTP set registryScheme: HTTP", where)
	case strings.Contains(err.Error(), "tls:"):
		return fail("%s: TLS handshake failed (%v)", where, unwrapURL(err))
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fail("%s: no answer within %s; check that the master can reach %s (routes, firewalls, proxy)", where, registryTimeout, host)
	}
	return fail("%s: not reachable from the first master: %v; check the address and that the master can reach it (routes, DNS, firewalls)", where, unwrapURL(err))
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
