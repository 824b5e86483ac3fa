// Package config loads dhctl's configuration documents: multi-document YAML files (optionally Go
// templates over the environment), each matched by kind and apiVersion to an OpenAPI v3 schema,
// validated, defaulted, checked against cross-field rules, and decoded into a typed Cluster.
// Every problem found is reported at once, each naming file, document, field and line.
package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dhctl-dev/dhctl/candi"
)

// maxFileSize bounds one configuration file; real ones are a few kilobytes.
const maxFileSize = 8 << 20

// LoadOptions says what to load.
type LoadOptions struct {
	ConfigPaths           []string                    // --config, in order
	ResourcePaths         []string                    // --resources: any kinds, all kept as resources
	ConnectionConfigPaths []string                    // --connection-config: SSHConfig/SSHHost only
	LookupEnv             func(string) (string, bool) // for templates; nil means an empty environment
	Schemas               *Registry                   // nil = built-in registry from candi.FS
	VersionMap            *VersionMap                 // nil = candi/version_map.yml from candi.FS
	// Require lists documents the operation cannot do without (bootstrap needs an
	// InitConfiguration); a missing one is a problem naming its kind and who needs it.
	// ClusterConfiguration is always required when ConfigPaths is not empty.
	Require []Requirement

	limits *limits // nil = defaultLimits(); tests set smaller ones
}

// Requirement is a kind of document an operation needs, for LoadOptions.Require.
type Requirement struct {
	Kind string // e.g. KindInitConfiguration
	By   string // what needs it, for the message, e.g. "bootstrap"
}

// Document is one YAML document as loaded: for schema-known kinds with defaults applied.
type Document struct {
	File       string
	Index      int // 1-based within File
	APIVersion string
	Kind       string
	Name       string // metadata.name, when the document has one
	Object     map[string]any
}

// Cluster is the typed configuration of one cluster.
type Cluster struct {
	ClusterConfiguration         ClusterConfiguration
	InitConfiguration            *InitConfiguration
	StaticClusterConfiguration   *StaticClusterConfiguration
	ProviderClusterConfiguration *Document // raw provider document (e.g. VsphereClusterConfiguration), defaults applied
	SSHConfig                    *SSHConfig
	SSHHosts                     []SSHHost
	NodeGroups                   []NodeGroup
	ModuleConfigs                []ModuleConfig
	Resources                    []Document // unknown kinds from --config and everything from --resources
	Documents                    []Document // every schema-known document, defaults applied, in input order
	KubernetesVersion            string     // resolved minor ("Automatic" -> the version map's default), e.g. "1.33"

	schemas *Registry
}

// source is which flag a file came from; it decides which kinds a file may hold.
type source int

const (
	fromConfig source = iota
	fromResources
	fromConnection
)

// flag is the command-line flag files of this source come from, for hints.
func (s source) flag() string {
	switch s {
	case fromResources:
		return "--resources"
	case fromConnection:
		return "--connection-config"
	}
	return "--config"
}

// loadedDoc is a document with what rules need to point back at it.
type loadedDoc struct {
	Document
	root *yaml.Node
	src  source
	env  *fileEnv // nil when nothing in the file came from the environment
}

type loader struct {
	reg      *Registry
	vm       *VersionMap
	budget   *budget
	problems Problems
	// envValues are the environment variables templates read, name -> value, so that no
	// problem prints one.
	envValues map[string]string
	docs      []*loadedDoc // schema-known, valid documents, in input order
	res       []*loadedDoc // resources
	// mayHaveClusterConfiguration is set when a --config document was a ClusterConfiguration
	// but invalid, or could not be read far enough to know its kind: then "there is no
	// ClusterConfiguration" would be a misleading follow-on problem.
	mayHaveClusterConfiguration bool
	// unsureConfig and unsureConnection say that a --config or --connection-config document
	// could not be read far enough to know its kind: then no kind is reported missing.
	unsureConfig, unsureConnection bool
	// seen are the kinds of documents read, valid or not, and kinds a slip was taken for: a
	// required kind among them is not reported missing.
	seen map[string]bool
}

// Load reads, renders, validates and decodes the configuration. When the input is invalid the
// error is a Problems listing everything wrong (use errors.As); other errors (a broken built-in
// schema, a cancelled context) are returned as they are.
func Load(ctx context.Context, opts LoadOptions) (*Cluster, error) {
	reg := opts.Schemas
	if reg == nil {
		var err error
		if reg, err = NewRegistry(candi.FS); err != nil {
			return nil, fmt.Errorf("built-in schemas: %w", err)
		}
	}
	vm := opts.VersionMap
	if vm == nil {
		var err error
		if vm, err = LoadVersionMap(candi.FS); err != nil {
			return nil, fmt.Errorf("built-in version map: %w", err)
		}
	}
	for _, r := range opts.Require {
		if !reg.Has(r.Kind) {
			return nil, fmt.Errorf("LoadOptions.Require: no schema for kind %q", r.Kind)
		}
	}
	lim := defaultLimits()
	if opts.limits != nil {
		lim = *opts.limits
	}
	l := &loader{reg: reg, vm: vm, budget: newBudget(lim), envValues: map[string]string{}, seen: map[string]bool{}}
	fileOrder := map[string]int{}
	inputs := []struct {
		paths []string
		src   source
	}{{opts.ConfigPaths, fromConfig}, {opts.ResourcePaths, fromResources}, {opts.ConnectionConfigPaths, fromConnection}}
	var read []inputFile
	for _, in := range inputs {
		for _, p := range in.paths {
			if l.stop() {
				break
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if _, seen := fileOrder[p]; !seen {
				fileOrder[p] = len(fileOrder)
			}
			f, err := l.openFile(ctx, p, in.src, read)
			if err != nil {
				return nil, err
			}
			if f == nil {
				continue
			}
			read = append(read, *f)
			l.loadFile(p, f.data, in.src, opts.LookupEnv)
		}
	}
	var c *Cluster
	if !l.stop() {
		c = l.assemble(len(opts.ConfigPaths) > 0)
		l.checkRequired(opts.Require, len(opts.ConfigPaths) > 0)
	}
	if len(l.problems) > 0 {
		sortProblems(l.problems, fileOrder)
		scrubEnvValues(l.problems, l.envValues)
		if len(l.problems) >= maxProblems {
			l.problems = append(l.problems, Problem{Message: fmt.Sprintf("stopped after %d problems", maxProblems), Hint: "fix these and run again"})
		}
		return nil, l.problems
	}
	return c, nil
}

// inputFile is a file read for this Load: its path, the flag it came from, what it is on disk.
type inputFile struct {
	path string
	src  source
	openedFile
}

// openFile reads one file named on the command line. A file that cannot be read, or that was
// read already under another (or the same) name, is a problem and gives nil; only a done context
// is an error.
func (l *loader) openFile(ctx context.Context, path string, src source, earlier []inputFile) (*inputFile, error) {
	if path == "" {
		l.add(Problem{Message: src.flag() + " was given an empty path", Hint: "pass a file name (is the variable meant to hold it empty?)"})
		l.unsure(src)
		return nil, nil
	}
	f, ie := readInput(ctx, path, maxFileSize)
	if ie != nil {
		if ie.err != nil {
			return nil, ie.err
		}
		msg, hint := ie.msg, ie.hint
		if hint == "" { // an error of the system call, not a refusal of ours
			msg, hint = "cannot read the file: "+msg, "check the path given to "+src.flag()
		}
		l.add(Problem{File: path, Message: msg, Hint: hint})
		l.unsure(src)
		return nil, nil
	}
	for _, e := range earlier {
		// The same file under two names would otherwise show up as a duplicate document
		// pointing at itself.
		if os.SameFile(e.info, f.info) {
			l.add(Problem{File: path,
				Message: fmt.Sprintf("the file is given twice (%s %s and %s %s)", e.src.flag(), e.path, src.flag(), path),
				Hint:    "pass each file once"})
			return nil, nil
		}
	}
	return &inputFile{path: path, src: src, openedFile: *f}, nil
}

// yamlErrorLine extracts the line from yaml.v3's "yaml: line N: ..." errors.
var yamlErrorLine = regexp.MustCompile(`^yaml: line (\d+): `)

func (l *loader) loadFile(file string, data []byte, src source, lookupEnv func(string) (string, bool)) {
	rendered, use, prob := renderTemplate(file, data, lookupEnv, l.budget)
	if use != nil {
		for name, v := range use.values {
			l.envValues[name] = v
		}
	}
	if prob != nil {
		l.add(*prob)
		l.unsure(src)
		return
	}
	if p := l.checkYAMLSize(file, rendered); p != nil {
		l.add(*p)
		l.unsure(src)
		return
	}
	env := newFileEnv(rendered, use)
	// Where values from the environment went is known by node positions in the whole file, so
	// such a file is parsed whole before its documents are looked at; others are looked at one
	// document at a time, so that a resource's tree can go once it is checked.
	var pending []*yaml.Node
	defer func() {
		for i, root := range pending {
			l.loadDocument(file, i+1, root, src, env)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(rendered))
	for index := 1; !l.stop(); index++ {
		var node yaml.Node
		err := decodeSafely(dec, &node)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			p := Problem{File: file, Document: index, Message: err.Error(), Hint: "fix the YAML syntax"}
			if m := yamlErrorLine.FindStringSubmatch(p.Message); m != nil {
				p.Line, _ = strconv.Atoi(m[1])
				p.Message = p.Message[len(m[0]):]
			} else {
				p.Message = strings.TrimPrefix(p.Message, "yaml: ")
			}
			p.Message = "YAML syntax: " + p.Message
			l.add(p)
			l.unsure(src)
			return // the decoder cannot resynchronise after a syntax error
		}
		if env != nil {
			env.addNodes(&node)
			pending = append(pending, &node)
			continue
		}
		l.loadDocument(file, index, &node, src, nil)
	}
}

// decodeSafely guards against a parser panic on hostile input: a config loader must never crash.
func decodeSafely(dec *yaml.Decoder, node *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: the YAML parser failed on this document (%v)", r)
		}
	}()
	return dec.Decode(node)
}

func (l *loader) loadDocument(file string, index int, root *yaml.Node, src source, env *fileEnv) {
	if l.stop() {
		return
	}
	var value any
	at := func(path []string, keyLine bool, kind, msg, hint string) Problem {
		return problemAt(file, index, kind, root, value, env, path, keyLine, msg, hint)
	}
	value, err := newValueConverter(l.budget).convert(root)
	if err != nil {
		l.unsure(src)
		var ne *nodeError
		if errors.As(err, &ne) {
			p := Problem{File: file, Document: index, Kind: kindOf(root), Path: formatPath(nil, root, ne.path), Message: ne.msg, Hint: ne.hint}
			if ne.node != nil {
				p.Line, p.Column = ne.node.Line, ne.node.Column
			}
			l.add(p)
		} else {
			l.add(Problem{File: file, Document: index, Message: err.Error()})
		}
		return
	}
	if value == nil {
		return // an empty document (only comments, or a stray ---)
	}
	obj, ok := value.(map[string]any)
	if !ok {
		l.unsure(src)
		l.add(at(nil, false, "", fmt.Sprintf("a document must be a mapping with apiVersion and kind, not %s", describeKind(value)), "start the document with apiVersion: and kind: lines"))
		return
	}
	apiVersion, kind, ok := l.typeMeta(obj, at)
	if !ok {
		l.unsure(src)
	}
	if kind == KindClusterConfiguration && src == fromConfig {
		l.mayHaveClusterConfiguration = true // there is one, valid or not
	}
	if !ok {
		return
	}
	l.seen[kind] = true
	doc := &loadedDoc{Document: Document{File: file, Index: index, APIVersion: apiVersion, Kind: kind, Object: obj}, root: root, src: src, env: env}
	if md, ok := obj["metadata"].(map[string]any); ok {
		doc.Name, _ = md["name"].(string)
	}

	schema, known := l.reg.lookup(kind, apiVersion)
	if !known && l.reg.Has(kind) {
		l.add(at([]string{"apiVersion"}, false, kind,
			fmt.Sprintf("%s is not supported for kind %s", doc.show([]string{"apiVersion"}, apiVersion), kind),
			"use "+strings.Join(l.reg.APIVersions(kind), " or ")))
		return
	}
	if !known {
		if p, bad := l.unknownKindProblem(doc, at); bad {
			l.add(p)
			return
		}
		l.addResource(doc)
		return
	}
	if p, bad := l.misplacedKindProblem(doc, at); bad {
		l.add(p)
		return
	}
	hidden := func(path []string) bool { return doc.fromEnv(path) != nil || doc.keyFromEnv(path) }
	issues, onlyUnknown := validateValue(schema, obj, root, max(maxProblems-len(l.problems), 0), hidden)
	for _, is := range issues {
		l.add(problemAt(file, index, kind, root, obj, env, is.path, is.keyLine, is.msg, is.hint))
	}
	if len(issues) > 0 && !onlyUnknown {
		return
	}
	// A document whose only faults are unknown fields still decodes sensibly, so it goes on to
	// the cross-field rules: the user then sees all problems in one run. Load fails anyway.
	if src == fromResources {
		l.addResource(doc) // created as written: the cluster applies its own defaults
		return
	}
	applyDefaults(schema, obj)
	l.docs = append(l.docs, doc)
}

// addResource keeps a document to create after the install. Nothing points back into its YAML
// any more, so the tree (~170 bytes a node) is let go.
func (l *loader) addResource(d *loadedDoc) {
	d.root = nil
	l.res = append(l.res, d)
}

// add records a problem, up to maxProblems.
func (l *loader) add(p Problem) {
	if len(l.problems) >= maxProblems {
		return
	}
	l.problems = append(l.problems, p)
}

// stop says that Load goes no further: no more problems are kept, or the run's budget of values
// is spent (which is one problem, not one for every document after it). Loops that find problems
// stop, and so does Load.
func (l *loader) stop() bool { return len(l.problems) >= maxProblems || l.budget.values < 0 }

// checkYAMLSize refuses a file that could hold more YAML values than the run has left, before
// yaml.v3 parses it: it builds a document's whole tree (~250 bytes a node) before anything can
// count the values in it.
func (l *loader) checkYAMLSize(file string, data []byte) *Problem {
	if n := yamlNodeBound(data); n > l.budget.values {
		msg := fmt.Sprintf("holds too much YAML: a quick count finds room for up to %d values, and one run may load at most %d (all files, aliases expanded)", n, l.budget.max.values)
		if l.budget.values < l.budget.max.values {
			msg = fmt.Sprintf("holds too much YAML: a quick count finds room for up to %d values, and only %d are left of the %d one run may load (all files, aliases expanded)", n, l.budget.values, l.budget.max.values)
		}
		return &Problem{File: file, Message: msg, Hint: "is this the right file? dhctl's documents hold a few hundred values"}
	}
	return nil
}

func (l *loader) unsure(src source) {
	switch src {
	case fromConfig:
		l.mayHaveClusterConfiguration, l.unsureConfig = true, true
	case fromConnection:
		l.unsureConnection = true
	}
}

// checkRequired reports each required kind of which there is no document, unless one may be
// hidden behind another problem (a file that could not be read, a kind mistyped).
func (l *loader) checkRequired(reqs []Requirement, haveConfigPaths bool) {
	for _, r := range reqs {
		if l.seen[r.Kind] || r.Kind == KindClusterConfiguration && haveConfigPaths {
			continue // there is one, or assemble has said there is none
		}
		where := "--config files have"
		unsure := l.unsureConfig
		if r.Kind == KindSSHConfig || r.Kind == KindSSHHost {
			where = "--connection-config and --config files have"
			unsure = unsure || l.unsureConnection
		}
		if unsure {
			continue
		}
		l.add(Problem{
			Message: fmt.Sprintf("%s needs a document of kind %s, and the %s none", r.By, r.Kind, where),
			Hint:    fmt.Sprintf("add one with apiVersion: %s, kind: %s", strings.Join(l.reg.APIVersions(r.Kind), " or "), r.Kind),
		})
	}
}

// kindOf reads the kind of a document straight from its YAML, for problems found before the
// document could be converted.
func kindOf(root *yaml.Node) string {
	key, val := locate(root, []string{"kind"})
	if key == nil || key.Value != "kind" || val.Kind != yaml.ScalarNode || val.ShortTag() != "!!str" {
		return ""
	}
	return val.Value
}

// typeMeta checks the two fields every document needs before it can be matched to a schema.
func (l *loader) typeMeta(obj map[string]any, at func([]string, bool, string, string, string) Problem) (apiVersion, kind string, ok bool) {
	apiVersion, okA := obj["apiVersion"].(string)
	kind, okK := obj["kind"].(string)
	kindForMsg := ""
	if okK {
		kindForMsg = kind
	}
	ok = true
	for _, f := range []struct {
		name, val string
		isStr     bool
		example   string
	}{{"apiVersion", apiVersion, okA, "deckhouse.io/v1"}, {"kind", kind, okK, "ClusterConfiguration"}} {
		switch raw, present := obj[f.name]; {
		case !present || raw == nil:
			l.add(at([]string{f.name}, false, kindForMsg, "required field is missing", fmt.Sprintf("every document needs apiVersion and kind, e.g. %s: %s", f.name, f.example)))
			ok = false
		case !f.isStr || f.val == "":
			l.add(at([]string{f.name}, false, kindForMsg, "must be a non-empty string", fmt.Sprintf("e.g. %s: %s", f.name, f.example)))
			ok = false
		}
	}
	return apiVersion, kind, ok
}

// builtinKinds are the kinds this package decodes itself; any other registered kind ending in
// ClusterConfiguration is a provider's.
var builtinKinds = map[string]bool{
	KindClusterConfiguration: true, KindInitConfiguration: true, KindStaticClusterConfiguration: true,
	KindSSHConfig: true, KindSSHHost: true, KindNodeGroup: true, KindModuleConfig: true,
}

func isProviderKind(kind string) bool {
	return !builtinKinds[kind] && strings.HasSuffix(kind, "ClusterConfiguration")
}

// unknownKindProblem decides whether a kind without a schema is a mistake rather than a resource:
// a slip of a known kind (kindSuggestion), a provider this build lacks, or any unknown kind in
// --connection-config.
func (l *loader) unknownKindProblem(d *loadedDoc, at func([]string, bool, string, string, string) Problem) (Problem, bool) {
	group, _, _ := strings.Cut(d.APIVersion, "/")
	if group == "deckhouse.io" || group == "dhctl.deckhouse.io" || d.src == fromConnection {
		if c, ok := kindSuggestion(d.Kind, l.reg.Kinds()); ok {
			l.seen[c] = true // reported here; "there is none" would only repeat it
			return at([]string{"kind"}, false, d.Kind, "unknown kind "+d.show([]string{"kind"}, d.Kind), fmt.Sprintf("did you mean %q?", c)), true
		}
	}
	if d.src == fromConnection {
		return at([]string{"kind"}, false, d.Kind, fmt.Sprintf("%s does not belong in --connection-config", d.Kind), "it holds only SSHConfig and SSHHost documents; pass other documents with --config or --resources"), true
	}
	if group != "deckhouse.io" && group != "dhctl.deckhouse.io" {
		return Problem{}, false
	}
	if d.src == fromConfig && isProviderKind(d.Kind) {
		var have []string
		for _, k := range l.reg.Kinds() {
			if isProviderKind(k) {
				have = append(have, k)
			}
		}
		hint := "this dhctl has no cloud provider built in; use clusterType: Static"
		if len(have) > 0 {
			hint = "providers this dhctl knows: " + strings.Join(have, ", ")
		}
		return at([]string{"kind"}, false, d.Kind, fmt.Sprintf("no schema for provider document %s", d.Kind), hint), true
	}
	return Problem{}, false
}

// misplacedKindProblem reports schema-known documents passed with the wrong flag.
func (l *loader) misplacedKindProblem(d *loadedDoc, at func([]string, bool, string, string, string) Problem) (Problem, bool) {
	switch d.src {
	case fromConnection:
		if d.Kind != KindSSHConfig && d.Kind != KindSSHHost {
			return at([]string{"kind"}, false, d.Kind, fmt.Sprintf("%s does not belong in --connection-config", d.Kind), "it holds only SSHConfig and SSHHost documents; pass this one with --config"), true
		}
	case fromResources:
		if d.Kind != KindNodeGroup && d.Kind != KindModuleConfig {
			return at([]string{"kind"}, false, d.Kind, fmt.Sprintf("%s does not belong in --resources", d.Kind), "pass it with --config (SSHConfig and SSHHost with --connection-config)"), true
		}
	}
	return Problem{}, false
}

// problemAt builds a problem for a field path of a document, finding its line in the YAML.
// value (may be nil) and root help render list indexes as [i].
//
// With env, keys of the path that came from the environment are not shown, nor a kind that did,
// and a message about a value from the environment says so.
func problemAt(file string, index int, kind string, root *yaml.Node, value any, env *fileEnv, path []string, keyLine bool, msg, hint string) Problem {
	var hide []bool
	if env != nil {
		hide = make([]bool, len(path))
		for i, k := range keyNodes(root, path) {
			hide[i] = env.namesOf(k) != nil
		}
		if _, k := locate(root, []string{"kind"}); env.namesOf(k) != nil {
			kind = ""
		}
	}
	p := Problem{File: file, Document: index, Kind: shortText(kind), Path: formatPath(value, root, path, hide...), Message: msg, Hint: hint}
	key, val := locate(root, path)
	n := val
	if key != nil && (keyLine || val == nil || val.Kind != yaml.ScalarNode) {
		n = key
	}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	if env != nil && pathExists(root, path) {
		what, names := "value", env.namesOf(val)
		if keyLine {
			what, names = "key", env.namesOf(key)
		}
		if names != nil && !strings.Contains(p.Message, "environment variable") {
			p.Message += fmt.Sprintf(" (the %s comes from %s)", what, envVars(names))
		}
	}
	return p
}

// problem is problemAt for a loaded document.
func (d *loadedDoc) problem(path []string, msg, hint string) Problem {
	return problemAt(d.File, d.Index, d.Kind, d.root, d.Object, d.env, path, false, msg, hint)
}

// where names a document for messages that refer to another one.
func (d *loadedDoc) where() string {
	return fmt.Sprintf("%s document %d", d.File, d.Index)
}

// decodeInto turns a validated document into its typed struct.
func decodeInto(d *loadedDoc, out any) *Problem {
	js, err := json.Marshal(d.Object)
	if err == nil {
		err = json.Unmarshal(js, out)
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		// Valid by the schema but not representable, e.g. an "integer" of 1e300.
		p := d.problem(strings.Split(typeErr.Field, "."), fmt.Sprintf("%s does not fit a field of type %s", typeErr.Value, typeErr.Type), "write a smaller value")
		return &p
	}
	if err != nil {
		p := d.problem(nil, "cannot decode the document: "+err.Error(), "")
		return &p
	}
	return nil
}

// RenderDefaults prints every schema-known document with defaults applied, as multi-document
// YAML. Secret values (passwords, keys, registry credentials) are printed as <redacted>.
func (c *Cluster) RenderDefaults() ([]byte, error) {
	var buf bytes.Buffer
	for i, d := range c.Documents {
		var obj any = d.Object
		if c.schemas != nil {
			if s, ok := c.schemas.lookup(d.Kind, d.APIVersion); ok {
				obj = redactSecrets(s, d.Object)
			}
		}
		node, err := orderedNode(obj, true)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", d.File, d.Index, err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(node); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", d.File, d.Index, err)
		}
		if err := enc.Close(); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// orderedNode builds a YAML node with apiVersion, kind and metadata first (as people write
// them) and the other keys sorted, so the output is stable and readable.
func orderedNode(v any, top bool) (*yaml.Node, error) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		first := map[string]int{}
		if top {
			first = map[string]int{"apiVersion": 0, "kind": 1, "metadata": 2}
		}
		sortKeys(keys, first)
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, k := range keys {
			child, err := orderedNode(v[k], false)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, child)
		}
		return n, nil
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, x := range v {
			child, err := orderedNode(x, false)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, child)
		}
		return n, nil
	}
	n := &yaml.Node{}
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	return n, nil
}

func sortKeys(keys []string, first map[string]int) {
	rank := func(k string) int {
		if r, ok := first[k]; ok {
			return r
		}
		return len(first)
	}
	sort.Slice(keys, func(i, j int) bool {
		if ri, rj := rank(keys[i]), rank(keys[j]); ri != rj {
			return ri < rj
		}
		return keys[i] < keys[j]
	})
}

// SecretValues are the values of every field the schemas mark secret (passwords, keys, registry
// credentials, a provider's password), for the log redactor: they must never reach a log.
func (c *Cluster) SecretValues() []string {
	var out []string
	if c == nil || c.schemas == nil {
		return out
	}
	for _, d := range c.Documents {
		if s, ok := c.schemas.lookup(d.Kind, d.APIVersion); ok {
			collectSecrets(s, d.Object, &out)
		}
	}
	return out
}
