package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PushOptions say where a bundle goes.
type PushOptions struct {
	// Repo is the registry path the items go below (host[:port]/path): the imagesRepo (or
	// nodeImagesRepo) of the InitConfiguration.
	Repo     string
	Registry Registry
	// Only, when set, pushes only the items at these paths.
	Only []string
	// Attempts bounds the tries per item (default 3).
	Attempts int
	// Logf reports a line per item and the summary.
	Logf func(format string, args ...any)
	// Bar, when set (a terminal), shows the current item's progress in place.
	Bar io.Writer
}

// PushResult is what a push did.
type PushResult struct {
	Pushed, Present int
	Bytes           int64 // of the items pushed (blobs the registry had are included)
	Took            time.Duration
}

// Push copies the bundle's items into the registry: it checks write access first, skips items
// the registry already has, retries an item a bounded number of times, and ends by checking
// that every item is there with the bundle's digest. Every blob is verified as it is read from
// the bundle; a corrupted one fails the push and names its item.
func Push(ctx context.Context, b *Bundle, o PushOptions) (*PushResult, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	repo := strings.TrimSuffix(o.Repo, "/")
	if repo == "" {
		return nil, errors.New("mirror: no registry path to push to")
	}
	items, err := selectItems(b.Manifest.Items, o.Only)
	if err != nil {
		return nil, err
	}
	t, err := o.Registry.transport()
	if err != nil {
		return nil, fmt.Errorf("mirror: --registry-ca: %w", err)
	}
	start := time.Now()
	if len(items) > 0 {
		ref, err := o.Registry.reference(items[0].Ref(repo))
		if err != nil {
			return nil, fmt.Errorf("mirror: %s: %w", repo, err)
		}
		if err := remote.CheckPushPermission(ref, keychain{o.Registry.auth()}, t); err != nil {
			return nil, fmt.Errorf("mirror: no write access to %s%s: %w; check the registry's address, --registry-login and --registry-password, and that this user may push there", repo, asUser(o.Registry.User), err)
		}
	}
	res := &PushResult{}
	for i, it := range items {
		ref, err := o.Registry.reference(it.Ref(repo))
		if err != nil {
			return res, fmt.Errorf("mirror: %s: %w", it.Path, err)
		}
		if d, err := remote.Head(ref, o.Registry.options(ctx, t)...); err == nil && d.Digest.String() == it.Digest {
			res.Present++
			o.Logf("[%d/%d] %s: already in the registry", i+1, len(items), it.Path)
			continue
		}
		img, err := b.Image(it)
		if err != nil {
			return res, err
		}
		t0 := time.Now()
		var last error
		for attempt := 1; attempt <= o.Attempts; attempt++ {
			if last = pushImage(ctx, ref, img, o, t, fmt.Sprintf("[%d/%d] %s", i+1, len(items), it.Path)); last == nil {
				break
			}
			if ctx.Err() != nil || errors.As(last, new(*CorruptBlobError)) || attempt == o.Attempts {
				break
			}
			o.Logf("[%d/%d] %s: attempt %d of %d failed, retrying: %v", i+1, len(items), it.Path, attempt, o.Attempts, last)
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt) * 2 * time.Second):
			}
		}
		if last != nil {
			return res, fmt.Errorf("mirror: pushing %s (%s) to %s: %w", it.Path, it.Kind, ref, last)
		}
		res.Pushed++
		res.Bytes += it.Size
		o.Logf("[%d/%d] %s: %s pushed in %v", i+1, len(items), it.Path, HumanBytes(it.Size), time.Since(t0).Round(time.Millisecond))
	}
	if err := Verify(ctx, repo, items, o.Registry); err != nil {
		return res, err
	}
	res.Took = time.Since(start)
	o.Logf("pushed %d item(s) (%s), %d already there, to %s in %v; all %d verified", res.Pushed, HumanBytes(res.Bytes), res.Present, repo, res.Took.Round(time.Millisecond), len(items))
	return res, nil
}

func pushImage(ctx context.Context, r name.Reference, img v1.Image, o PushOptions, t http.RoundTripper, label string) error {
	opts := o.Registry.options(ctx, t)
	if o.Bar == nil {
		return remote.Write(r, img, opts...)
	}
	updates := make(chan v1.Update, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for u := range updates {
			if u.Total > 0 {
				fmt.Fprintf(o.Bar, "\r%s %s %s / %s   ", label, bar(u.Complete, u.Total), HumanBytes(u.Complete), HumanBytes(u.Total))
			}
		}
		fmt.Fprint(o.Bar, "\r\033[K")
	}()
	err := remote.Write(r, img, append(opts, remote.WithProgress(updates))...)
	<-done
	return err
}

func bar(done, total int64) string {
	const width = 24
	n := int(done * width / total)
	if n > width {
		n = width
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// Verify checks that every item is in the registry below repo with the digest it has in the
// bundle; the error names every item that is not.
func Verify(ctx context.Context, repo string, items []Item, reg Registry) error {
	t, err := reg.transport()
	if err != nil {
		return err
	}
	var bad []string
	for _, it := range items {
		ref, err := reg.reference(it.Ref(repo))
		if err != nil {
			return err
		}
		d, err := remote.Head(ref, reg.options(ctx, t)...)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s: %v", it.Path, err))
		case d.Digest.String() != it.Digest:
			bad = append(bad, fmt.Sprintf("%s: the registry has %s, the bundle %s", it.Path, d.Digest, it.Digest))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("mirror: %d of %d items are not in %s as the bundle has them:\n  %s", len(bad), len(items), repo, strings.Join(bad, "\n  "))
	}
	return nil
}

func selectItems(all []Item, only []string) ([]Item, error) {
	if len(only) == 0 {
		return all, nil
	}
	want := map[string]bool{}
	for _, p := range only {
		want[p] = true
	}
	var out []Item
	for _, it := range all {
		if want[it.Path] {
			out = append(out, it)
			delete(want, it.Path)
		}
	}
	if len(want) > 0 {
		var missing []string
		for p := range want {
			missing = append(missing, p)
		}
		return nil, fmt.Errorf("mirror: the bundle has no %s", strings.Join(missing, ", "))
	}
	return out, nil
}

func asUser(u string) string {
	if u == "" {
		return " (anonymously)"
	}
	return " as " + u
}

// CorruptBlobError is a blob of the bundle whose content is not its digest.
type CorruptBlobError struct {
	Item, Kind, File string
	Digest, Got      string
}

func (e *CorruptBlobError) Error() string {
	return fmt.Sprintf("bundle: blob %s of %s (%s, in %s) is corrupted: its content hashes to %s; copy or pull the bundle again", e.Digest, e.Item, e.Kind, e.File, e.Got)
}
