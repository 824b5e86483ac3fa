package images

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry says how to reach a registry: an HTTP transport (for the rig, one
// that dials inside its network namespace and trusts its CA) and basic-auth
// credentials.
type Registry struct {
	Transport      http.RoundTripper
	User, Password string
}

func (r Registry) options(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx)}
	if r.Transport != nil {
		opts = append(opts, remote.WithTransport(r.Transport))
	}
	if r.User != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password}))
	}
	return opts
}

// Push writes img to ref (host[:port]/path:tag) and returns its digest.
func Push(ctx context.Context, ref string, img v1.Image, dst Registry) (v1.Hash, error) {
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("images: reference %q: %w", ref, err)
	}
	if err := remote.Write(r, img, dst.options(ctx)...); err != nil {
		return v1.Hash{}, fmt.Errorf("images: pushing %s: %w", ref, err)
	}
	return img.Digest()
}

// Digest returns the manifest digest of ref in the registry.
func Digest(ctx context.Context, ref string, dst Registry) (v1.Hash, error) {
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("images: reference %q: %w", ref, err)
	}
	desc, err := remote.Head(r, dst.options(ctx)...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("images: looking up %s: %w", ref, err)
	}
	return desc.Digest, nil
}
