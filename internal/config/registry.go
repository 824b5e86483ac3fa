package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	sigsyaml "sigs.k8s.io/yaml"
)

// Schema extensions dhctl reads from the OpenAPI schemas.
const (
	extSecret = "x-dhctl-secret" // true: never echo the value
	extHint   = "x-dhctl-hint"   // how to fix a value that does not match `pattern`
)

// Registry maps a document's kind and apiVersion to its OpenAPI v3 schema. The built-in kinds come
// from candi/openapi; a provider package adds its own ClusterConfiguration kind with Add.
// A Registry is not safe for concurrent Add; build it fully before loading.
type Registry struct {
	schemas map[schemaKey]*openapi3.Schema
}

type schemaKey struct{ kind, apiVersion string }

// schemaFile is the layout of a file under candi/openapi (the same layout Deckhouse uses).
type schemaFile struct {
	Kind        string `json:"kind"`
	APIVersions []struct {
		APIVersion  string          `json:"apiVersion"`
		OpenAPISpec json.RawMessage `json:"openAPISpec"`
	} `json:"apiVersions"`
}

// NewRegistry reads every openapi/*.yaml (or .yml) file of fsys, e.g. candi.FS, and every
// provider's cloud-providers/<provider>/openapi/*.yaml. A nil fsys gives an empty registry.
func NewRegistry(fsys fs.FS) (*Registry, error) {
	r := &Registry{schemas: map[schemaKey]*openapi3.Schema{}}
	if fsys == nil {
		return r, nil
	}
	dirs := []string{"openapi"}
	providers, err := fs.ReadDir(fsys, "cloud-providers")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading provider schemas: %w", err)
	}
	for _, p := range providers {
		if p.IsDir() {
			dirs = append(dirs, path.Join("cloud-providers", p.Name(), "openapi"))
		}
	}
	for _, dir := range dirs {
		entries, err := fs.ReadDir(fsys, dir)
		if err != nil {
			return nil, fmt.Errorf("reading schemas: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
				continue
			}
			p := path.Join(dir, name)
			data, err := fs.ReadFile(fsys, p)
			if err != nil {
				return nil, fmt.Errorf("reading schema %s: %w", p, err)
			}
			if err := r.AddSchemaFile(data); err != nil {
				return nil, fmt.Errorf("schema %s: %w", p, err)
			}
		}
	}
	return r, nil
}

// AddSchemaFile registers every apiVersion of a schema file in Deckhouse's layout (kind, then
// apiVersions[].apiVersion and .openAPISpec), the layout of candi/openapi; a provider can ship its
// ClusterConfiguration schema the same way.
func (r *Registry) AddSchemaFile(data []byte) error {
	js, err := sigsyaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	var f schemaFile
	if err := json.Unmarshal(js, &f); err != nil {
		return err
	}
	if f.Kind == "" || len(f.APIVersions) == 0 {
		return fmt.Errorf("want kind and apiVersions[].openAPISpec")
	}
	for _, v := range f.APIVersions {
		if err := r.addJSON(f.Kind, v.APIVersion, v.OpenAPISpec); err != nil {
			return err
		}
	}
	return nil
}

// Add registers the schema (an OpenAPI v3 schema object, YAML or JSON) of kind at apiVersion.
// Every object in it should set additionalProperties: false so that unknown fields are reported.
func (r *Registry) Add(kind, apiVersion string, schemaYAML []byte) error {
	js, err := sigsyaml.YAMLToJSON(schemaYAML)
	if err != nil {
		return fmt.Errorf("schema of %s %s: %w", apiVersion, kind, err)
	}
	return r.addJSON(kind, apiVersion, js)
}

func (r *Registry) addJSON(kind, apiVersion string, js []byte) error {
	if kind == "" || apiVersion == "" {
		return fmt.Errorf("schema needs both a kind and an apiVersion (got %q, %q)", kind, apiVersion)
	}
	key := schemaKey{kind, apiVersion}
	if _, dup := r.schemas[key]; dup {
		return fmt.Errorf("schema of %s %s registered twice", apiVersion, kind)
	}
	s := &openapi3.Schema{}
	if err := json.Unmarshal(js, s); err != nil {
		return fmt.Errorf("schema of %s %s: %w", apiVersion, kind, err)
	}
	if err := s.Validate(context.Background()); err != nil {
		return fmt.Errorf("schema of %s %s is not a valid OpenAPI v3 schema: %w", apiVersion, kind, err)
	}
	r.schemas[key] = s
	return nil
}

func (r *Registry) lookup(kind, apiVersion string) (*openapi3.Schema, bool) {
	s, ok := r.schemas[schemaKey{kind, apiVersion}]
	return s, ok
}

// Kinds lists the registered kinds, sorted.
func (r *Registry) Kinds() []string {
	seen := map[string]bool{}
	var out []string
	for k := range r.schemas {
		if !seen[k.kind] {
			seen[k.kind] = true
			out = append(out, k.kind)
		}
	}
	sort.Strings(out)
	return out
}

// APIVersions lists the apiVersions registered for kind, sorted.
func (r *Registry) APIVersions(kind string) []string {
	var out []string
	for k := range r.schemas {
		if k.kind == kind {
			out = append(out, k.apiVersion)
		}
	}
	sort.Strings(out)
	return out
}

// Has reports whether kind has a schema at any apiVersion.
func (r *Registry) Has(kind string) bool { return len(r.APIVersions(kind)) > 0 }
