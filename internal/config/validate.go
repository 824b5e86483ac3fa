package config

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"gopkg.in/yaml.v3"
)

// unsupportedProperty parses kin-openapi's reason for an unknown field (pinned at v0.133.0).
var unsupportedProperty = regexp.MustCompile(`^property (".*") is unsupported$`)

// fieldIssue is a schema violation at a field path, before it gets a file and line.
type fieldIssue struct {
	path    []string
	keyLine bool // point at the key of path (unknown field) rather than its value
	msg     string
	hint    string
}

// validateValue checks value against schema and returns the first limit violations, each phrased
// for a human with a fix, and whether every violation (counted or not) is an unknown field. Values
// of fields marked x-dhctl-secret never appear in the text, nor values or keys at paths for which
// hidden says true (they came from the environment). Phrasing costs (a "did you mean" is an
// edit distance to every field name), so no more are phrased than can be reported.
func validateValue(schema *openapi3.Schema, value any, root *yaml.Node, limit int, hidden func([]string) bool) (issues []fieldIssue, onlyUnknown bool) {
	err := schema.VisitJSON(value, openapi3.MultiErrors())
	if err == nil {
		return nil, false
	}
	onlyUnknown = true
	for _, e := range flattenErrors(err) {
		var se *openapi3.SchemaError
		isSchemaError := errors.As(e, &se)
		if !isSchemaError || se.SchemaField != "properties" || !unsupportedProperty.MatchString(se.Reason) {
			onlyUnknown = false
		}
		if len(issues) >= limit {
			if !onlyUnknown {
				break
			}
			continue
		}
		if !isSchemaError {
			issues = append(issues, fieldIssue{msg: e.Error()})
			continue
		}
		issues = append(issues, describeSchemaError(se, root, hidden))
	}
	return issues, onlyUnknown
}

func flattenErrors(err error) []error {
	var me openapi3.MultiError
	if errors.As(err, &me) {
		var out []error
		for _, e := range me {
			out = append(out, flattenErrors(e)...)
		}
		return out
	}
	return []error{err}
}

func describeSchemaError(se *openapi3.SchemaError, root *yaml.Node, hidden func([]string) bool) fieldIssue {
	path := se.JSONPointer()
	s := se.Schema
	if s == nil {
		s = &openapi3.Schema{}
	}
	secret := isSecret(s) || hidden != nil && hidden(path)
	switch se.SchemaField {
	case "properties":
		if m := unsupportedProperty.FindStringSubmatch(se.Reason); m != nil {
			name, err := strconv.Unquote(m[1])
			if err == nil {
				p := child(path, name)
				if hidden != nil && hidden(p) {
					return fieldIssue{path: p, keyLine: true, msg: "unknown field", hint: "remove it"}
				}
				return fieldIssue{path: p, keyLine: true, msg: "unknown field", hint: didYouMean(name, propertyNames(s))}
			}
		}
	case "required":
		// kin-openapi puts the missing key at the end of the path already.
		name := ""
		if len(path) > 0 {
			name = path[len(path)-1]
		}
		hint := "add it"
		if p := s.Properties[name]; p != nil && p.Value != nil && p.Value.Example != nil {
			hint = fmt.Sprintf("add it, e.g. %s: %v", name, p.Value.Example)
		}
		return fieldIssue{path: path, msg: "required field is missing", hint: hint}
	case "type":
		return typeIssue(path, s, se.Value, root, secret)
	case "nullable":
		return fieldIssue{path: path, msg: "must not be null", hint: "write a value (an empty value is null)"}
	case "enum":
		allowed := make([]string, len(s.Enum))
		for i, v := range s.Enum {
			allowed[i] = fmt.Sprint(v)
		}
		if se.Value == nil {
			return fieldIssue{path: path, msg: "must not be null", hint: "write one of: " + strings.Join(allowed, ", ")}
		}
		if secret {
			return fieldIssue{path: path, msg: "value is not one of: " + strings.Join(allowed, ", ")}
		}
		hint := ""
		if str, ok := se.Value.(string); ok {
			if c, ok := closest(str, allowed); ok {
				hint = fmt.Sprintf("did you mean %q?", c)
			}
		}
		return fieldIssue{path: path, msg: fmt.Sprintf("%s is not one of: %s", showValue(se.Value), strings.Join(allowed, ", ")), hint: hint}
	case "pattern":
		hint, _ := s.Extensions[extHint].(string)
		if hint == "" {
			hint = "it must match " + s.Pattern
		}
		if secret {
			return fieldIssue{path: path, msg: "value is not valid", hint: hint}
		}
		return fieldIssue{path: path, msg: fmt.Sprintf("%s is not valid", showValue(se.Value)), hint: hint}
	case "minimum":
		return fieldIssue{path: path, msg: fmt.Sprintf("must be at least %v", numberText(s.Min))}
	case "maximum":
		return fieldIssue{path: path, msg: fmt.Sprintf("must be at most %v", numberText(s.Max))}
	case "minLength":
		if s.MinLength == 1 {
			return fieldIssue{path: path, msg: "must not be empty"}
		}
		return fieldIssue{path: path, msg: fmt.Sprintf("must be at least %d characters long", s.MinLength)}
	case "maxLength":
		if s.MaxLength != nil {
			return fieldIssue{path: path, msg: fmt.Sprintf("must be at most %d characters long", *s.MaxLength)}
		}
	case "minItems":
		return fieldIssue{path: path, msg: fmt.Sprintf("must list at least %d item(s)", s.MinItems)}
	case "maxItems":
		if s.MaxItems != nil {
			return fieldIssue{path: path, msg: fmt.Sprintf("must list at most %d item(s)", *s.MaxItems)}
		}
	case "uniqueItems":
		return fieldIssue{path: path, msg: "must not repeat items"}
	}
	if secret {
		return fieldIssue{path: path, msg: "value is not valid"}
	}
	return fieldIssue{path: path, msg: "is not valid: " + se.Reason}
}

func typeIssue(path []string, s *openapi3.Schema, value any, root *yaml.Node, secret bool) fieldIssue {
	want := "a value of type " + strings.Join(s.Type.Slice(), " or ")
	switch {
	case s.Type.Is(openapi3.TypeString):
		want = "a string"
	case s.Type.Is(openapi3.TypeInteger):
		want = "an integer"
	case s.Type.Is(openapi3.TypeNumber):
		want = "a number"
	case s.Type.Is(openapi3.TypeBoolean):
		want = "true or false"
	case s.Type.Is(openapi3.TypeArray):
		want = "a list"
	case s.Type.Is(openapi3.TypeObject):
		want = "a mapping"
	}
	is := describeKind(value)
	if f, ok := value.(float64); ok && s.Type.Is(openapi3.TypeInteger) && f != math.Trunc(f) {
		is = "a fractional number"
	}
	issue := fieldIssue{path: path, msg: fmt.Sprintf("must be %s, not %s", want, is)}
	// The classic slip: kubernetesVersion: 1.30 is the number 1.3. Quote what the user wrote.
	if s.Type.Is(openapi3.TypeString) && !secret {
		if _, n := locate(root, path); n != nil && n.Kind == yaml.ScalarNode && (is == "a number" || is == "a boolean") {
			issue.hint = fmt.Sprintf("quote it: %q", n.Value)
		}
	}
	return issue
}

func describeKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64, int, float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

func isSecret(s *openapi3.Schema) bool {
	b, _ := s.Extensions[extSecret].(bool)
	return b
}

func propertyNames(s *openapi3.Schema) []string {
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// showValue quotes a non-secret value for a message, shortened so a pasted blob stays readable.
func showValue(v any) string {
	var s string
	switch v := v.(type) {
	case string:
		s = strconv.Quote(shortText(v))
	default:
		s = fmt.Sprint(v)
	}
	return s
}

func numberText(p *float64) string {
	if p == nil {
		return "?"
	}
	if *p == math.Trunc(*p) {
		return strconv.FormatInt(int64(*p), 10)
	}
	return strconv.FormatFloat(*p, 'g', -1, 64)
}

// applyDefaults fills in schema defaults for absent (or null) properties, recursing into
// objects, lists and maps. It copies each default so documents never share (and never mutate)
// the schema's own values.
func applyDefaults(s *openapi3.Schema, v any) {
	switch v := v.(type) {
	case map[string]any:
		for name, ref := range s.Properties {
			if ref == nil || ref.Value == nil {
				continue
			}
			if v[name] == nil && ref.Value.Default != nil {
				v[name] = copyJSONValue(ref.Value.Default)
			}
			if v[name] != nil {
				applyDefaults(ref.Value, v[name])
			}
		}
		if ap := s.AdditionalProperties.Schema; ap != nil && ap.Value != nil {
			for name, item := range v {
				if _, known := s.Properties[name]; !known && item != nil {
					applyDefaults(ap.Value, item)
				}
			}
		}
	case []any:
		if s.Items != nil && s.Items.Value != nil {
			for _, item := range v {
				applyDefaults(s.Items.Value, item)
			}
		}
	}
}

// copyJSONValue deep-copies a decoded JSON value, turning integral float64s (what JSON decoding
// gives for 22) into int64 so defaults look like what a user would have written.
func copyJSONValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = copyJSONValue(x)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, x := range v {
			s[i] = copyJSONValue(x)
		}
		return s
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v)
		}
		return v
	}
	return v
}

// secretPaths lists the field paths of value that the schema marks secret, for redaction.
func redactSecrets(s *openapi3.Schema, v any) any {
	if s == nil {
		return v
	}
	if isSecret(s) && v != nil {
		return "<redacted>"
	}
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			if p := s.Properties[k]; p != nil && p.Value != nil {
				m[k] = redactSecrets(p.Value, x)
			} else if ap := s.AdditionalProperties.Schema; ap != nil && ap.Value != nil {
				m[k] = redactSecrets(ap.Value, x)
			} else {
				m[k] = x
			}
		}
		return m
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			if s.Items != nil {
				out[i] = redactSecrets(s.Items.Value, x)
			} else {
				out[i] = x
			}
		}
		return out
	}
	return v
}

// collectSecrets appends the string values at the paths s marks secret.
func collectSecrets(s *openapi3.Schema, v any, out *[]string) {
	if s == nil || v == nil {
		return
	}
	if isSecret(s) {
		if str, ok := v.(string); ok && str != "" {
			*out = append(*out, str)
		}
		return
	}
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if p := s.Properties[k]; p != nil && p.Value != nil {
				collectSecrets(p.Value, x, out)
			} else if ap := s.AdditionalProperties.Schema; ap != nil && ap.Value != nil {
				collectSecrets(ap.Value, x, out)
			}
		}
	case []any:
		if s.Items != nil {
			for _, x := range v {
				collectSecrets(s.Items.Value, x, out)
			}
		}
	}
}
