// Package packages is the packages endpoint: an HTTP server on the operator's side that nodes
// reach through a reverse SSH tunnel (so they need neither internet nor registry credentials).
// It serves each node package file named in the version map, taken from the registry (OCI
// artifacts under <imagesRepo>/packages/<name>, each file the blob whose digest is its sha256) or
// from its upstream URL, and verifies every sha256 before a byte reaches a node.
package packages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dhctl-dev/dhctl/internal/config"
)

// Registry is where packages are read from in the registry mode.
type Registry struct {
	Repo      string // imagesRepo, e.g. registry.example.com:5000/dhctl
	User      string
	Password  string // secret
	Insecure  bool   // plain HTTP
	Transport http.RoundTripper
}

// Options configure a Server.
type Options struct {
	// Packages is the version map's packages of the cluster's release.
	Packages map[string]config.Package
	// Registry, when set, is the source; otherwise each file's upstream URL is.
	Registry *Registry
	// HTTPClient fetches upstream URLs; nil = a client with a 10-minute timeout.
	HTTPClient *http.Client
	// CacheDir keeps verified files (named by sha256) so many nodes fetch each file once.
	CacheDir string
	Log      *slog.Logger
}

// Server serves GET /packages/<name>/<file>.
type Server struct {
	opts  Options
	files map[string]config.PackageFile // "<name>/<file>" -> file
	mu    sync.Mutex
	locks map[string]*sync.Mutex // per sha256: one download per file
	ln    net.Listener
	srv   *http.Server

	stopPrefetch context.CancelFunc // nil until Prefetch
	prefetching  sync.WaitGroup
}

// prefetchWorkers is how many files Prefetch fetches at once: enough to overlap one file's
// verification with another's transfer, few enough to leave the registry to the nodes' own
// requests.
const prefetchWorkers = 2

// New checks the options and indexes the files it may serve.
func New(opts Options) (*Server, error) {
	if opts.CacheDir == "" {
		return nil, errors.New("packages: no cache directory")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Minute}
	}
	if err := os.MkdirAll(opts.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("packages: cache directory: %w", err)
	}
	s := &Server{opts: opts, files: map[string]config.PackageFile{}, locks: map[string]*sync.Mutex{}}
	for pkg, p := range opts.Packages {
		for _, f := range p.FileList() {
			s.files[pkg+"/"+f.Name] = f
		}
	}
	return s, nil
}

// Start listens on 127.0.0.1 (a free port) and serves until Close.
func (s *Server) Start() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("packages: listen: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return ln.Addr().String(), nil
}

// Prefetch fetches every file into the cache in the background, so that a node's request finds
// its file verified instead of waiting for the fetch: nodes ask for the Kubernetes packages only
// once the runtime's are installed, and every node needs every file. A failed prefetch is only
// logged: the node's request fetches the file again and reports the error. Close stops it.
func (s *Server) Prefetch() {
	if s.stopPrefetch != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopPrefetch = cancel
	keys := make([]string, 0, len(s.files))
	for k := range s.files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	work := make(chan string)
	s.prefetching.Add(1)
	go func() {
		defer s.prefetching.Done()
		defer close(work)
		for _, k := range keys {
			select {
			case work <- k:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range prefetchWorkers {
		s.prefetching.Add(1)
		go func() {
			defer s.prefetching.Done()
			for key := range work {
				pkg, file, _ := strings.Cut(key, "/")
				if _, err := s.Fetch(ctx, pkg, s.files[key]); err != nil && ctx.Err() == nil {
					s.opts.Log.Debug("packages endpoint: prefetch failed (a node asking for the file fetches it again)", "package", pkg, "file", file, "err", err)
				}
			}
		}()
	}
}

// Close stops the server and any prefetch, and waits for them: nothing is written to the cache
// after it returns.
func (s *Server) Close() error {
	if s.stopPrefetch != nil {
		s.stopPrefetch()
	}
	defer s.prefetching.Wait()
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// ServeHTTP answers GET /packages/<name>/<file> with the verified file. Errors are plain text
// the node prints: they name the package and file.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "only GET", http.StatusMethodNotAllowed)
		return
	}
	key, ok := strings.CutPrefix(r.URL.Path, "/packages/")
	pkg, file, _ := strings.Cut(key, "/")
	f, known := s.files[key]
	if !ok || !known {
		http.Error(w, fmt.Sprintf("package %s file %s is not in the version map", pkg, file), http.StatusNotFound)
		return
	}
	path, err := s.Fetch(r.Context(), pkg, f)
	if err != nil {
		s.opts.Log.Error("packages endpoint", "package", pkg, "file", file, "err", err)
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	s.opts.Log.Debug("packages endpoint: serving", "package", pkg, "file", file, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeFile(w, r, path)
}

// Fetch returns the path of the verified file in the cache, fetching it first if needed.
func (s *Server) Fetch(ctx context.Context, pkg string, f config.PackageFile) (string, error) {
	if len(f.SHA256) != 64 {
		return "", fmt.Errorf("package %s file %s: the version map has no sha256 for it; refusing to serve it unverified", pkg, f.Name)
	}
	final := filepath.Join(s.opts.CacheDir, f.SHA256)
	lock := s.lock(f.SHA256)
	lock.Lock()
	defer lock.Unlock()
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	body, from, err := s.open(ctx, pkg, f)
	if err != nil {
		return "", err
	}
	defer body.Close()
	tmp, err := os.CreateTemp(s.opts.CacheDir, ".partial-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	start := time.Now()
	n, err := io.Copy(io.MultiWriter(tmp, h), body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("package %s file %s: reading %s: %w", pkg, f.Name, from, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		return "", fmt.Errorf("package %s file %s: checksum mismatch: %s has sha256 %s, the version map says %s", pkg, f.Name, from, got, f.SHA256)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", err
	}
	s.opts.Log.Info("packages endpoint: fetched and verified", "package", pkg, "file", f.Name, "bytes", n, "from", from, "took", time.Since(start).Round(time.Millisecond))
	return final, nil
}

func (s *Server) lock(sum string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.locks[sum]
	if !ok {
		l = &sync.Mutex{}
		s.locks[sum] = l
	}
	return l
}

func (s *Server) open(ctx context.Context, pkg string, f config.PackageFile) (io.ReadCloser, string, error) {
	if reg := s.opts.Registry; reg != nil {
		ref := strings.TrimSuffix(reg.Repo, "/") + "/packages/" + pkg + "@sha256:" + f.SHA256
		var nopts []name.Option
		if reg.Insecure {
			nopts = append(nopts, name.Insecure)
		}
		d, err := name.NewDigest(ref, nopts...)
		if err != nil {
			return nil, "", fmt.Errorf("package %s file %s: bad registry reference %s: %w", pkg, f.Name, ref, err)
		}
		ropts := []remote.Option{remote.WithContext(ctx)}
		if reg.Transport != nil {
			ropts = append(ropts, remote.WithTransport(reg.Transport))
		}
		if reg.User != "" {
			ropts = append(ropts, remote.WithAuth(&authn.Basic{Username: reg.User, Password: reg.Password}))
		}
		layer, err := remote.Layer(d, ropts...)
		if err != nil {
			return nil, "", fmt.Errorf("package %s file %s: no blob with the version map's sha256 in the registry (%s): %w", pkg, f.Name, ref, err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			return nil, "", fmt.Errorf("package %s file %s: no blob with the version map's sha256 in the registry (%s): %w", pkg, f.Name, ref, err)
		}
		return rc, ref, nil
	}
	if f.URL == "" {
		return nil, "", fmt.Errorf("package %s file %s: no upstream URL in the version map and no registry configured", pkg, f.Name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return nil, "", fmt.Errorf("package %s file %s: %w", pkg, f.Name, err)
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("package %s file %s: downloading %s: %w", pkg, f.Name, f.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, "", fmt.Errorf("package %s file %s: downloading %s: HTTP %s", pkg, f.Name, f.URL, resp.Status)
	}
	return resp.Body, f.URL, nil
}
