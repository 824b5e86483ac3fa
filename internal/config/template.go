package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

// Limits of templates, per run like those in budget.go. A template has no loops, but variables
// let each action double a value ({{ $a = print $a $a }}), and printf pads to any width: what
// functions may produce is metered, and checked before they allocate, not after.
const (
	// maxRenderedSize bounds what the templates of one run expand to.
	maxRenderedSize = 16 << 20
	// maxTemplateWork bounds the bytes template functions take and return, in one run: enough
	// for substituting keys and certificate bundles, little enough to be done in ~0.1 s.
	maxTemplateWork = 8 << 20
	// maxActionBytes bounds the text inside {{ }} of one run: text/template keeps ~80 bytes of
	// parse tree for each byte of it (text outside actions costs one byte a byte).
	maxActionBytes = 256 << 10
	// maxFormatWidth bounds printf's widths and precisions.
	maxFormatWidth = 100
)

// templateFuncs are the functions a config template may call, besides if/else; anything else is
// refused before the template runs. and, or and not are text/template's own (cheap: they look
// at truth values); the others are ours, metered.
var templateFuncs = []string{"env", "envOr", "quote", "printf", "print", "eq", "ne", "and", "or", "not"}

// missingEnvError is what {{ env "NAME" }} fails with when NAME is not set.
type missingEnvError struct{ name string }

func (e *missingEnvError) Error() string {
	return fmt.Sprintf("environment variable %s is not set", e.name)
}

// templateLimitError is a template running into one of the limits, phrased for the user.
type templateLimitError struct{ msg, hint string }

func (e *templateLimitError) Error() string { return e.msg }

// templateLine extracts "name:LINE:COL" from text/template's parse and exec errors.
var templateLine = regexp.MustCompile(`^template: [^\n]*?:(\d+)(?::(\d+))?: `)

// envUse is what a template took from the environment: the variables it read, and the parts of
// its output that may hold their values.
type envUse struct {
	values map[string]string // name -> value, of every variable read
	spans  []envSpan         // in the rendered text, in order
}

// envSpan is output of one {{ }} expression that may hold values of the named variables: the
// output of any expression after the first variable was read (a value can be kept in a
// variable), named by the values it contains, or by every variable read so far when it
// contains none of them as they are (printf "%x" of one, say).
type envSpan struct {
	start, end int // byte offsets
	names      []string
}

// renderTemplate renders one config file as a Go text/template whose only data is the
// environment, reached through functions (docs/configuration.md lists them). Files without "{{"
// are returned as they are. What the templates of a run may cost is taken from b. The envUse
// says where values from the environment went, so that problems never print them; it is
// returned with a problem too, whose text may hold values read before the template failed.
func renderTemplate(file string, data []byte, lookupEnv func(string) (string, bool), b *budget) ([]byte, *envUse, *Problem) {
	if !bytes.Contains(data, []byte("{{")) {
		return data, nil, nil
	}
	use := &envUse{values: map[string]string{}}
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	if n := actionBytes(data); n > b.actionBytes {
		return nil, nil, &Problem{File: file,
			Message: fmt.Sprintf("the {{ }} expressions of the templates of one run may hold at most %s together, and this file's hold %d KiB", sizeText(b.max.actionBytes), n>>10),
			Hint:    "templates are for substituting a few values; write the rest out"}
	} else {
		b.actionBytes -= n
	}
	m := &meter{b: b}
	funcs := template.FuncMap{
		"env": func(name string) (string, error) {
			v, ok := lookupEnv(name)
			if !ok {
				return "", &missingEnvError{name: name}
			}
			use.values[name] = v
			return v, m.took(len(v))
		},
		"envOr": func(name, def string) (string, error) {
			if v, ok := lookupEnv(name); ok {
				use.values[name] = v
				return v, m.took(len(v))
			}
			return def, m.took(len(def))
		},
		"quote": func(s string) (string, error) {
			// strconv.Quote writes at most 4 bytes for an input byte (\xNN) and the quotes.
			if err := m.mayMake(4*len(s) + 2); err != nil {
				return "", err
			}
			q := strconv.Quote(s)
			return q, m.took(len(s) + len(q))
		},
		"printf": m.printf,
		"print":  m.print,
		"eq":     m.eq,
		"ne": func(a any, bs ...any) (bool, error) {
			eq, err := m.eq(a, bs...)
			return !eq, err
		},
	}
	t, err := template.New(file).Funcs(funcs).Option("missingkey=error").Parse(string(data))
	if err != nil {
		p := templateProblem(file, err)
		p.Message = "template syntax: " + p.Message
		p.Hint = "fix the {{ ... }} expression, or escape a literal {{ as {{ \"{{\" }}"
		return nil, nil, p
	}
	if p := checkTemplateActions(file, t); p != nil {
		return nil, nil, p
	}
	var out bytes.Buffer
	w := &limitedWriter{w: &out, b: b, use: use, texts: textNodes(t.Tree.Root)}
	if err := t.Execute(w, nil); err != nil {
		p := templateProblem(file, err)
		var miss *missingEnvError
		var limit *templateLimitError
		switch {
		case errors.As(err, &miss):
			p.Message = miss.Error()
			p.Hint = fmt.Sprintf("export %s, or use {{ envOr %q \"default\" }}", miss.name, miss.name)
		case errors.As(err, &limit):
			p.Message, p.Hint = limit.msg, limit.hint
		case errors.Is(err, errRenderedTooLarge):
			p.Message = fmt.Sprintf("the templates of one run render to more than %s", sizeText(b.max.rendered))
			p.Hint = "check the template for a value printed over and over"
		default:
			p.Hint = "templates may only use " + allowedFuncsText()
		}
		return nil, use, p
	}
	return out.Bytes(), use, nil
}

// textNodes maps the first byte of each text of the template to its length: text/template writes
// a text node's own bytes, so a write is told apart from an expression's output by its address.
func textNodes(root *parse.ListNode) map[*byte]int {
	texts := map[*byte]int{}
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
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
		case *parse.TextNode:
			if len(n.Text) > 0 {
				texts[&n.Text[0]] = len(n.Text)
			}
		}
	}
	walk(root)
	return texts
}

// namesIn names the variables whose values out contains, as they are or quoted; all variables
// read when it contains none.
func (u *envUse) namesIn(out []byte) []string {
	var names, all []string
	for name, v := range u.values {
		all = append(all, name)
		if v == "" {
			continue
		}
		if bytes.Contains(out, []byte(v)) || bytes.Contains(out, []byte(strings.Trim(strconv.Quote(v), `"`))) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		names = all
	}
	sort.Strings(names)
	return names
}

func allowedFuncsText() string {
	return strings.Join(templateFuncs, ", ") + " and {{ if }}"
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

// actionBytes counts the bytes of data inside {{ }} (delimiters included) the way text/template's
// lexer finds them: a "}}" inside a quoted string, a raw string or a character constant does not
// end an action, and a comment runs to its "*/". FuzzActionBytes checks it against the parser.
func actionBytes(data []byte) int {
	n := 0
	for i := 0; ; {
		x := bytes.Index(data[i:], []byte("{{"))
		if x < 0 {
			return n
		}
		start := i + x
		j := start + 2
		if j+1 < len(data) && data[j] == '-' && isTemplateSpace(data[j+1]) {
			j += 2 // a trim marker
		}
		if bytes.HasPrefix(data[j:], []byte("/*")) {
			c := bytes.Index(data[j+2:], []byte("*/"))
			if c < 0 {
				return n + len(data) - start // "unclosed comment": text/template stops here
			}
			j += 2 + c + 2
		}
		end := scanAction(data, j)
		n += end - start
		i = end
		if i >= len(data) {
			return n
		}
	}
}

// scanAction returns the offset just past the "}}" that ends the action starting at i, or
// len(data) when there is none (text/template then fails: "unclosed action").
func scanAction(data []byte, i int) int {
	for i < len(data) {
		switch c := data[i]; c {
		case '}':
			if i+1 < len(data) && data[i+1] == '}' {
				return i + 2
			}
			i++
		case '"', '\'':
			i++
			for i < len(data) && data[i] != c && data[i] != '\n' {
				if data[i] == '\\' {
					i++
				}
				i++
			}
			i++
		case '`':
			x := bytes.IndexByte(data[i+1:], '`')
			if x < 0 {
				return len(data)
			}
			i += 1 + x + 1
		default:
			i++
		}
	}
	return len(data)
}

func isTemplateSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }

var errRenderedTooLarge = errors.New("rendered template too large")

// limitedWriter takes the rendered text, up to what the run has left; a write past it stops the
// template. It notes which writes may hold values from the environment.
type limitedWriter struct {
	w     *bytes.Buffer
	b     *budget
	use   *envUse
	texts map[*byte]int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > l.b.rendered {
		return 0, errRenderedTooLarge
	}
	l.b.rendered -= len(p)
	if len(p) > 0 && len(l.use.values) > 0 && l.texts[&p[0]] != len(p) {
		start := l.w.Len()
		l.use.spans = append(l.use.spans, envSpan{start: start, end: start + len(p), names: l.use.namesIn(p)})
	}
	return l.w.Write(p)
}

// meter charges what template functions take and make to the run's budget.
type meter struct{ b *budget }

func (m *meter) exceeded() error {
	return &templateLimitError{
		msg:  fmt.Sprintf("the template functions of one run may take and make at most %s of text, and these need more", sizeText(m.b.max.templateWork)),
		hint: "check the template for a value that grows with every action, such as {{ $a = print $a $a }}"}
}

// mayMake says whether n more bytes fit, before they are made.
func (m *meter) mayMake(n int) error {
	if n > m.b.templateWork {
		return m.exceeded()
	}
	return nil
}

// took charges n bytes.
func (m *meter) took(n int) error {
	m.b.templateWork -= n
	if m.b.templateWork < 0 {
		return m.exceeded()
	}
	return nil
}

// printf is fmt.Sprintf for the values a template has (strings, numbers, booleans), with widths
// and precisions up to maxFormatWidth, given in the format: the output's size is bounded before
// anything is formatted.
func (m *meter) printf(format string, args ...any) (string, error) {
	directives, expands, err := checkFormat(format)
	if err != nil {
		return "", err
	}
	most, in, err := formatBound(args, expands)
	if err != nil {
		return "", err
	}
	most += len(format) + directives*(maxFormatWidth+32) // and "%!d(MISSING)"-like notes
	if err := m.mayMake(most); err != nil {
		return "", err
	}
	out := fmt.Sprintf(format, args...)
	return out, m.took(len(format) + in + len(out))
}

// print is fmt.Sprint, bounded like printf.
func (m *meter) print(args ...any) (string, error) {
	most, in, err := formatBound(args, false)
	if err != nil {
		return "", err
	}
	if err := m.mayMake(most + len(args)); err != nil { // and a space between operands
		return "", err
	}
	out := fmt.Sprint(args...)
	return out, m.took(in + len(out))
}

// formatBound is the most that formatting args can write (each with a width up to
// maxFormatWidth), and the bytes they hold. expands says that the format has a verb that writes
// more than a string holds: %q and %x write at most 10 bytes for an input byte ("\U0010ffff" for
// 4 bytes, "\x00", "% x").
func formatBound(args []any, expands bool) (most, in int, err error) {
	factor := 1
	if expands {
		factor = 10
	}
	for _, a := range args {
		switch a := a.(type) {
		case string:
			most += factor*len(a) + 2 + maxFormatWidth
			in += len(a)
		case bool, int, int64, uint64, float64, complex128, nil:
			most += 1024 // %f of 1e308 is 309 digits, and complex numbers have two
		default:
			return 0, 0, &templateLimitError{msg: fmt.Sprintf("printf and print take strings, numbers and booleans, not %T", a), hint: "pass a value from env, envOr or a literal"}
		}
	}
	return most, in, nil
}

// checkFormat counts the directives of a printf format, says whether one of them may write more
// than a string argument holds, and refuses widths and precisions larger than maxFormatWidth,
// and * (a width taken from the arguments).
func checkFormat(format string) (n int, expands bool, err error) {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		if i < len(format) && format[i] == '%' {
			continue
		}
		n++
		for i < len(format) && strings.IndexByte("+-# 0", format[i]) >= 0 {
			i++
		}
		for k := 0; k < 2 && i < len(format); k++ { // width, then .precision
			if k == 1 {
				if format[i] != '.' {
					break
				}
				i++
			}
			if i < len(format) && format[i] == '[' { // an argument index, e.g. %[2]d
				for i < len(format) && format[i] != ']' {
					i++
				}
				i++
			}
			if i < len(format) && format[i] == '*' {
				return 0, false, &templateLimitError{msg: "printf widths and precisions must be written in the format, not taken from an argument (*)", hint: fmt.Sprintf("write a number up to %d", maxFormatWidth)}
			}
			start := i
			for i < len(format) && format[i] >= '0' && format[i] <= '9' {
				i++
			}
			if i > start {
				if w, err := strconv.Atoi(format[start:i]); err != nil || w > maxFormatWidth {
					return 0, false, &templateLimitError{msg: fmt.Sprintf("printf width or precision %s is larger than %d", shortText(format[start:i]), maxFormatWidth), hint: fmt.Sprintf("use at most %d", maxFormatWidth)}
				}
			}
		}
		if i < len(format) && format[i] == '[' {
			for i < len(format) && format[i] != ']' {
				i++
			}
			i++
		}
		if i < len(format) && format[i] != 's' && format[i] != 'v' && format[i] != 'd' {
			expands = true // q, x, X, or a verb that is wrong for a string: "%!t(string=...)"
		}
	}
	return n, expands, nil
}

// eq is text/template's eq for the values a template has, with the bytes compared metered:
// comparing a long value over and over would be a loop by another name.
func (m *meter) eq(a any, bs ...any) (bool, error) {
	if len(bs) == 0 {
		return false, errors.New("missing argument for comparison")
	}
	for _, b := range bs {
		if sa, ok := a.(string); ok {
			if sb, ok := b.(string); ok {
				if err := m.took(min(len(sa), len(sb))); err != nil {
					return false, err
				}
				if sa == sb {
					return true, nil
				}
				continue
			}
		}
		switch a.(type) {
		case string, bool, int, int64, uint64, float64, complex128, nil:
		default:
			return false, fmt.Errorf("eq and ne compare strings, numbers and booleans, not %T", a)
		}
		switch b.(type) {
		case string, bool, int, int64, uint64, float64, complex128, nil:
		default:
			return false, fmt.Errorf("eq and ne compare strings, numbers and booleans, not %T", b)
		}
		if fmt.Sprintf("%T", a) != fmt.Sprintf("%T", b) {
			return false, fmt.Errorf("incompatible types for comparison: %T and %T", a, b)
		}
		if a == b {
			return true, nil
		}
	}
	return false, nil
}

// checkTemplateActions allows only what substituting environment values needs: text, {{ ... }}
// expressions with the functions of templateFuncs, and if/else. Loops, nested templates and
// with-blocks have no use in a config file, and a loop could make loading run for a very long time.
func checkTemplateActions(file string, t *template.Template) *Problem {
	refuse := func(n parse.Node, what string) *Problem {
		line, _ := t.Tree.ErrorContext(n)
		p := templateProblem(file, fmt.Errorf("template: %s: ", line))
		p.Message = fmt.Sprintf("template uses %s, which config files may not use", what)
		p.Hint = "only " + allowedFuncsText() + " are allowed"
		return p
	}
	if len(t.Templates()) > 1 {
		return &Problem{File: file, Message: "template defines other templates", Hint: "only " + allowedFuncsText() + " are allowed"}
	}
	allowed := map[string]bool{}
	for _, f := range templateFuncs {
		allowed[f] = true
	}
	var bad *Problem
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		if bad != nil {
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
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c)
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.ChainNode:
			walk(n.Node)
		case *parse.IdentifierNode:
			if !allowed[n.Ident] {
				bad = refuse(n, strconv.Quote(n.Ident))
			}
		case *parse.TextNode, *parse.CommentNode, *parse.StringNode, *parse.NumberNode, *parse.BoolNode,
			*parse.NilNode, *parse.DotNode, *parse.FieldNode, *parse.VariableNode:
		default:
			bad = refuse(n, strconv.Quote(firstWord(n.String())))
		}
	}
	walk(t.Tree.Root)
	return bad
}

func firstWord(s string) string {
	s = strings.TrimPrefix(s, "{{")
	if f := strings.Fields(s); len(f) > 0 {
		return strings.TrimSuffix(f[0], "}}")
	}
	return s
}
