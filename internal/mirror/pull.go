package mirror

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// platform is what nodes run: the image of an upstream multi-platform index that is pulled.
var nodePlatform = v1.Platform{OS: "linux", Architecture: "amd64"}

// PullOptions say where a pull takes the items from.
type PullOptions struct {
	Items []Item
	// SourceRepo, when set, is a registry path in dhctl's layout (another mirror, or a registry
	// that proxies upstream) every item is taken from; otherwise images come from the version
	// map's repositories and package files from their URLs.
	SourceRepo string
	Source     Registry
	// HTTPClient downloads package files from their URLs; nil = a client with a 30-minute timeout.
	HTTPClient *http.Client
	// ChunkSize splits each archive into files of at most this many bytes; 0 = one tar each.
	ChunkSize int64
	// Logf reports progress, a line per item.
	Logf func(format string, args ...any)
}

// PullResult is what a pull made.
type PullResult struct {
	Manifest *Manifest
	Stats    Stats
}

// Pull fetches every item into a bundle in dir. Blobs already fetched by an interrupted pull are
// not fetched again; each is verified before it is kept (package files against the version
// map's sha256, images against their digests and the version map's pins).
func Pull(ctx context.Context, dir string, o PullOptions) (*PullResult, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Minute}
	}
	t, err := o.Source.transport()
	if err != nil {
		return nil, fmt.Errorf("mirror: --source-ca: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	w, err := NewWriter(dir)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	start := time.Now()
	for i, it := range o.Items {
		if _, ok := w.Done(it.Path); ok {
			o.Logf("[%d/%d] %s: already in the bundle", i+1, len(o.Items), it.Path)
			continue
		}
		before := w.Stats()
		t0 := time.Now()
		from, err := pullItem(ctx, w, it, o, t)
		if err != nil {
			return nil, err
		}
		after := w.Stats()
		o.Logf("[%d/%d] %s: %s fetched from %s in %v", i+1, len(o.Items), it.Path, HumanBytes(after.BytesWritten-before.BytesWritten), from, time.Since(t0).Round(time.Millisecond))
	}
	m, err := w.Finish(ctx, o.Items, o.ChunkSize)
	if err != nil {
		return nil, err
	}
	st := w.Stats()
	o.Logf("bundle %s: %d items, %s in %d file(s); fetched %s (%d blobs), reused %d blobs, in %v", dir, len(m.Items), HumanBytes(m.Size()), len(m.Archives), HumanBytes(st.BytesWritten), st.BlobsWritten, st.BlobsReused, time.Since(start).Round(time.Millisecond))
	return &PullResult{Manifest: m, Stats: st}, nil
}

func pullItem(ctx context.Context, w *Writer, it Item, o PullOptions, t http.RoundTripper) (string, error) {
	ropts := append(o.Source.options(ctx, t), remote.WithPlatform(nodePlatform))
	switch {
	case o.SourceRepo != "":
		ref := it.Ref(o.SourceRepo)
		img, err := remoteImage(ref, it, o.Source, ropts)
		if err != nil {
			return ref, err
		}
		_, err = w.AddImage(ctx, it, img)
		return ref, err
	case it.Kind == KindImage:
		if it.Upstream == "" {
			return "", fmt.Errorf("mirror: %s: the version map gives no repository for it; pull it with --source", it.Path)
		}
		img, err := remoteImage(it.Upstream, it, Registry{}, ropts)
		if err != nil {
			return it.Upstream, err
		}
		_, err = w.AddImage(ctx, it, img)
		return it.Upstream, err
	default:
		_, err := w.AddPackage(ctx, it, func(ctx context.Context, f PackageFileRef) (io.ReadCloser, error) {
			return download(ctx, o.HTTPClient, f)
		})
		return "upstream URLs", err
	}
}

// remoteImage resolves ref (an index resolves to the node platform's image) and checks the
// version map's pin when the item has one.
func remoteImage(ref string, it Item, reg Registry, ropts []remote.Option) (v1.Image, error) {
	r, err := reg.reference(ref)
	if err != nil {
		return nil, fmt.Errorf("mirror: %s: reference %q: %w", it.Path, ref, err)
	}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return nil, fmt.Errorf("mirror: %s: %s: %w", it.Path, ref, err)
	}
	if it.Pin != "" && desc.Digest.String() != it.Pin {
		return nil, fmt.Errorf("mirror: %s: %s is %s, but the version map pins %s", it.Path, ref, desc.Digest, it.Pin)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("mirror: %s: %s: %w", it.Path, ref, err)
	}
	return img, nil
}

func download(ctx context.Context, c *http.Client, f PackageFileRef) (io.ReadCloser, error) {
	if f.URL == "" {
		return nil, fmt.Errorf("the version map gives no URL for it; pull it with --source")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("downloading %s: %w", f.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("downloading %s: HTTP %s", f.URL, resp.Status)
	}
	return resp.Body, nil
}

// HumanBytes prints a byte count for people (MB = 10^6 bytes, as registries and skopeo print).
func HumanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// Sizes returns the items with their sizes (manifest, config and layers; -1 when a file server
// does not say), read from where a pull would take them, without fetching any blob.
func Sizes(ctx context.Context, o PullOptions) ([]Item, error) {
	t, err := o.Source.transport()
	if err != nil {
		return nil, fmt.Errorf("mirror: --source-ca: %w", err)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: time.Minute}
	}
	ropts := append(o.Source.options(ctx, t), remote.WithPlatform(nodePlatform))
	out := make([]Item, len(o.Items))
	for i, it := range o.Items {
		ref := it.Upstream
		if o.SourceRepo != "" {
			ref = it.Ref(o.SourceRepo)
		}
		if it.Kind != KindImage && o.SourceRepo == "" {
			it.Size = 0
			for _, f := range it.Files {
				n, err := contentLength(ctx, o.HTTPClient, f.URL)
				if err != nil {
					return nil, fmt.Errorf("mirror: package %s file %s: %w", it.Name, f.Name, err)
				}
				if n < 0 || it.Size < 0 {
					it.Size = -1
				} else {
					it.Size += n
				}
			}
			out[i] = it
			continue
		}
		img, err := remoteImage(ref, it, o.Source, ropts)
		if err != nil {
			return nil, err
		}
		mf, err := img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("mirror: %s: %w", it.Path, err)
		}
		raw, _ := img.RawManifest()
		it.Size = int64(len(raw)) + mf.Config.Size
		for _, l := range mf.Layers {
			it.Size += l.Size
		}
		out[i] = it
	}
	return out, nil
}

func contentLength(ctx context.Context, c *http.Client, url string) (int64, error) {
	if url == "" {
		return 0, fmt.Errorf("the version map gives no URL for it; list it with --source")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HEAD %s: HTTP %s", url, resp.Status)
	}
	return resp.ContentLength, nil
}
