package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

// maxRenderedSize bounds what a template may expand to, so a template loop cannot eat the memory.
const maxRenderedSize = 16 << 20

// missingEnvError is what {{ env "NAME" }} fails with when NAME is not set.
type missingEnvError struct{ name string }

func (e *missingEnvError) Error() string {
	return fmt.Sprintf("environment variable %s is not set", e.name)
}

// templateLine extracts "name:LINE:COL" from text/template's parse and exec errors.
var templateLine = regexp.MustCompile(`^template: [^\n]*?:(\d+)(?::(\d+))?: `)

// renderTemplate renders one config file as a Go text/template whose only data is the
// environment, reached through functions:
//
//	{{ env "NAME" }}             value of NAME; a problem when NAME is not set
//	{{ envOr "NAME" "default" }} value of NAME, or the default when it is not set
//	{{ quote (env "NAME") }}     a double-quoted YAML string, safe for any value
//
// Files without "{{" are returned as they are.
func renderTemplate(file string, data []byte, lookupEnv func(string) (string, bool)) ([]byte, *Problem) {
	if !bytes.Contains(data, []byte("{{")) {
		return data, nil
	}
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	funcs := template.FuncMap{
		"env": func(name string) (string, error) {
			v, ok := lookupEnv(name)
			if !ok {
				return "", &missingEnvError{name: name}
			}
			return v, nil
		},
		"envOr": func(name, def string) string {
			if v, ok := lookupEnv(name); ok {
				return v
			}
			return def
		},
		"quote": strconv.Quote,
	}
	t, err := template.New(file).Funcs(funcs).Option("missingkey=error").Parse(string(data))
	if err != nil {
		p := templateProblem(file, err)
		p.Message = "template syntax: " + p.Message
		p.Hint = "fix the {{ ... }} expression, or escape a literal {{ as {{ \"{{\" }}"
		return nil, p
	}
	if p := checkTemplateActions(file, t); p != nil {
		return nil, p
	}
	var out bytes.Buffer
	if err := t.Execute(&limitedWriter{w: &out, left: maxRenderedSize}, nil); err != nil {
		p := templateProblem(file, err)
		var miss *missingEnvError
		switch {
		case errors.As(err, &miss):
			p.Message = miss.Error()
			p.Hint = fmt.Sprintf("export %s, or use {{ envOr %q \"default\" }}", miss.name, miss.name)
		case errors.Is(err, errRenderedTooLarge):
			p.Message = fmt.Sprintf("template renders to more than %d bytes", maxRenderedSize)
			p.Hint = "check the template for a runaway loop"
		default:
			p.Hint = "templates may only use env, envOr and quote"
		}
		return nil, p
	}
	return out.Bytes(), nil
}

func templateProblem(file string, err error) *Problem {
	p := &Problem{File: file, Message: err.Error()}
	msg := err.Error()
	if m := templateLine.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		if m[2] != "" {
			p.Column, _ = strconv.Atoi(m[2])
		}
		p.Message = msg[len(m[0]):]
	}
	return p
}

var errRenderedTooLarge = errors.New("rendered template too large")

type limitedWriter struct {
	w    *bytes.Buffer
	left int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > l.left {
		return 0, errRenderedTooLarge
	}
	l.left -= len(p)
	return l.w.Write(p)
}

// checkTemplateActions allows only what substituting environment values needs: text, {{ ... }}
// expressions and if/else. Loops, nested templates and with-blocks have no use in a config file,
// and a loop could make loading run for a very long time.
func checkTemplateActions(file string, t *template.Template) *Problem {
	if len(t.Templates()) > 1 {
		return &Problem{File: file, Message: "template defines other templates", Hint: "only {{ env ... }}, {{ envOr ... }}, {{ quote ... }} and {{ if }} are allowed"}
	}
	var bad parse.Node
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		if n == nil || bad != nil {
			return
		}
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.IfNode:
			walk(n.List)
			walk(n.ElseList)
		case *parse.TextNode, *parse.ActionNode, *parse.CommentNode:
		default:
			bad = n
		}
	}
	walk(t.Tree.Root)
	if bad == nil {
		return nil
	}
	line, _ := t.Tree.ErrorContext(bad)
	p := templateProblem(file, fmt.Errorf("template: %s: ", line))
	p.Message = fmt.Sprintf("template uses %q, which config files may not use", firstWord(bad.String()))
	p.Hint = "only {{ env ... }}, {{ envOr ... }}, {{ quote ... }} and {{ if }} are allowed"
	return p
}

func firstWord(s string) string {
	s = strings.TrimPrefix(s, "{{")
	if f := strings.Fields(s); len(f) > 0 {
		return strings.TrimSuffix(f[0], "}}")
	}
	return s
}
