package install

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"text/template"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"
)

// templateFuncs are the functions manifests may call.
func templateFuncs() template.FuncMap {
	return template.FuncMap{
		// quote makes a string literal valid in YAML and JSON alike.
		"quote": func(v any) (string, error) {
			b, err := json.Marshal(fmt.Sprint(v))
			return string(b), err
		},
		"b64": func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"indent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
	}
}

// Render renders every *.yaml file under dir of fsys (sorted by name) with values and returns
// the objects they hold. Errors name the file and document.
func Render(fsys fs.FS, dir string, values any) ([]*unstructured.Unstructured, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("templates %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			names = append(names, path.Join(dir, e.Name()))
		}
	}
	sort.Strings(names)
	var out []*unstructured.Unstructured
	for _, name := range names {
		objs, err := renderFile(fsys, name, values)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

func renderFile(fsys fs.FS, name string, values any) ([]*unstructured.Unstructured, error) {
	src, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	tmpl, err := template.New(name).Option("missingkey=error").Funcs(templateFuncs()).Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, values); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return decodeDocuments(name, buf.Bytes())
}

// decodeDocuments splits YAML on document separators and decodes each non-empty document into
// an object with apiVersion, kind and metadata.name.
func decodeDocuments(name string, data []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for i, doc := range splitYAML(data) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		js, err := sigsyaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("template %s, document %d: %w", name, i+1, err)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("template %s, document %d: %w", name, i+1, err)
		}
		if obj.GetName() == "" {
			return nil, fmt.Errorf("template %s, document %d (%s): no metadata.name", name, i+1, obj.GetKind())
		}
		out = append(out, obj)
	}
	return out, nil
}

func splitYAML(data []byte) []string {
	var docs []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if strings.TrimRight(line, " \r\n") == "---" {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	return append(docs, cur.String())
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
