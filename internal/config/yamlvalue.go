package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxValueNodes bounds how many values one document may expand to, aliases included, so that an
// "alias bomb" (a few lines that expand to billions of values) is an error, not an OOM.
const maxValueNodes = 100_000

// nodeError is a structural problem found while turning YAML nodes into values.
type nodeError struct {
	node *yaml.Node
	path []string
	msg  string
	hint string
}

func (e *nodeError) Error() string { return e.msg }

// valueConverter turns a yaml.v3 node tree into JSON-compatible values (map[string]any, []any,
// string, int64, float64, bool, nil), which is what the schema validator and encoding/json expect.
type valueConverter struct {
	budget int
}

func newValueConverter() *valueConverter { return &valueConverter{budget: maxValueNodes} }

func (c *valueConverter) convert(n *yaml.Node, path []string) (any, error) {
	c.budget--
	if c.budget < 0 {
		return nil, &nodeError{node: n, msg: fmt.Sprintf("document expands to more than %d values (YAML aliases?)", maxValueNodes), hint: "write the document out without anchors and aliases"}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return c.convert(n.Content[0], path)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, &nodeError{node: n, path: path, msg: "alias to an unknown anchor"}
		}
		return c.convert(n.Alias, path)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.AliasNode && k.Alias != nil {
				k = k.Alias
			}
			if k.Kind != yaml.ScalarNode {
				return nil, &nodeError{node: k, path: path, msg: "a mapping key must be a plain string", hint: "write the key as text"}
			}
			if k.ShortTag() == "!!merge" {
				return nil, &nodeError{node: k, path: path, msg: "YAML merge keys (<<) are not supported", hint: "write the merged fields out"}
			}
			key := k.Value
			if _, dup := m[key]; dup {
				return nil, &nodeError{node: k, path: child(path, key), msg: "duplicate field", hint: "keep one of the two"}
			}
			val, err := c.convert(v, child(path, key))
			if err != nil {
				return nil, err
			}
			m[key] = val
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			val, err := c.convert(item, child(path, strconv.Itoa(i)))
			if err != nil {
				return nil, err
			}
			s = append(s, val)
		}
		return s, nil
	case yaml.ScalarNode:
		return scalarValue(n, path)
	}
	return nil, &nodeError{node: n, path: path, msg: "unsupported YAML node"}
}

func scalarValue(n *yaml.Node, path []string) (any, error) {
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, &nodeError{node: n, path: path, msg: "not a valid boolean", hint: "write true or false"}
		}
		return b, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return i, nil
		}
		var u uint64
		if err := n.Decode(&u); err == nil {
			return float64(u), nil
		}
		return nil, &nodeError{node: n, path: path, msg: "integer out of range"}
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, &nodeError{node: n, path: path, msg: "not a valid number"}
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, &nodeError{node: n, path: path, msg: "NaN and infinite numbers are not allowed", hint: "write a finite number or quote the text"}
		}
		return f, nil
	case "!!str", "!!timestamp", "!!binary":
		// Timestamps and binary stay the text the user wrote: no field here wants a time value.
		return n.Value, nil
	}
	return nil, &nodeError{node: n, msg: fmt.Sprintf("unsupported YAML tag %s", n.Tag), hint: "remove the tag"}
}

// locate finds the YAML nodes of a field path in a document: the key node (nil for the root or a
// sequence item) and the value node. When the path goes beyond what the document has (a missing
// or defaulted field), it returns the nodes of the deepest existing parent, so that a problem can
// still point at a line.
func locate(root *yaml.Node, path []string) (key, val *yaml.Node) {
	n := root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	val = n
	for depth, seg := range path {
		if n == nil || depth > 1000 {
			return key, val
		}
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		switch n.Kind {
		case yaml.MappingNode:
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == seg {
					key, val = n.Content[i], n.Content[i+1]
					n, found = val, true
					break
				}
			}
			if !found {
				return key, val
			}
		case yaml.SequenceNode:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(n.Content) {
				return key, val
			}
			key, val = nil, n.Content[i]
			n = val
		default:
			return key, val
		}
	}
	return key, val
}

// formatPath renders a field path for humans: spec.nodeTemplate.labels["node-role.kubernetes.io/x"],
// sshAgentPrivateKeys[0].key. Segments that index a list in value are shown as [i].
func formatPath(value any, path []string) string {
	var b strings.Builder
	cur := value
	for _, seg := range path {
		switch v := cur.(type) {
		case []any:
			b.WriteString("[" + seg + "]")
			if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(v) {
				cur = v[i]
			} else {
				cur = nil
			}
			continue
		case map[string]any:
			cur = v[seg]
		default:
			cur = nil
		}
		if isPlainFieldName(seg) {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(seg)
		} else {
			b.WriteString("[" + strconv.Quote(seg) + "]")
		}
	}
	return b.String()
}

func isPlainFieldName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// child is path+seg in a fresh slice, so sibling paths never share a backing array.
func child(path []string, seg string) []string {
	out := make([]string, len(path)+1)
	copy(out, path)
	out[len(path)] = seg
	return out
}
