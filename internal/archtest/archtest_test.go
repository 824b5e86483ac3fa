// Package archtest checks the project's shape (docs/architecture.md): data flows one way, from
// commands to operations to capabilities; operations never import each other; and only
// internal/clusterstate knows the file names of a cluster's state dir.
package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/dhctl-dev/dhctl/"

// goFile is one parsed non-test file of the product.
type goFile struct {
	path string // relative to the repository root
	pkg  string // import path relative to the module, e.g. "internal/operations/bootstrap"
	file *ast.File
}

func productFiles(t *testing.T) []goFile {
	t.Helper()
	root := filepath.Join("..", "..")
	var out []goFile
	fset := token.NewFileSet()
	for _, top := range []string{"cmd", "internal", "providers"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			out = append(out, goFile{path: rel, pkg: filepath.ToSlash(filepath.Dir(rel)), file: f})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) < 50 {
		t.Fatalf("found only %d product files: is the test running from internal/archtest?", len(out))
	}
	return out
}

func imports(f goFile) []string {
	var out []string
	for _, imp := range f.file.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if rest, ok := strings.CutPrefix(p, module); ok {
			out = append(out, rest)
		}
	}
	return out
}

const operations = "internal/operations/"

func isOperation(pkg string) bool { return strings.HasPrefix(pkg, operations) }

func operationOf(pkg string) string {
	rest := strings.TrimPrefix(pkg, operations)
	name, _, _ := strings.Cut(rest, "/")
	return name
}

func TestDataFlowsOneWay(t *testing.T) {
	for _, f := range productFiles(t) {
		for _, imp := range imports(f) {
			switch {
			case strings.HasPrefix(imp, "cmd/"):
				t.Errorf("%s imports %s: nothing imports a command", f.path, imp)
			case isOperation(f.pkg) && isOperation(imp) && operationOf(f.pkg) != operationOf(imp):
				t.Errorf("%s imports %s: operations never import each other (what they share is a capability)", f.path, imp)
			case !isOperation(f.pkg) && !strings.HasPrefix(f.pkg, "cmd/") && isOperation(imp):
				t.Errorf("%s imports %s: a capability (or provider) never imports an operation", f.path, imp)
			}
		}
	}
}

// stateFiles are the names of the state dir's files; clusterstate alone spells them (state,
// phase and ssh own the lock, checkpoints and pinned keys they manage themselves).
var stateFiles = []string{"node/join.json", "node/hosts.json", "bootstrap/init.json", "bootstrap-completed.json", "cluster-uuid", "terraform/", "terraform-work", "infra/machines.json", "infra/discovery-data.json"}

func TestOnlyClusterStateNamesStateFiles(t *testing.T) {
	for _, f := range productFiles(t) {
		if f.pkg == "internal/clusterstate" {
			continue
		}
		ast.Inspect(f.file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			v, _ := strconv.Unquote(lit.Value)
			for _, name := range stateFiles {
				if strings.Contains(v, name) {
					t.Errorf("%s spells the state file %q (%s): use clusterstate.Local's accessors", f.path, name, v)
				}
			}
			return true
		})
		// Raw reads and writes of the state dir belong to clusterstate (and the phase runner's
		// checkpoints).
		if isOperation(f.pkg) || strings.HasPrefix(f.pkg, "cmd/") {
			src, err := os.ReadFile(filepath.Join("..", "..", f.path))
			if err != nil {
				t.Fatal(err)
			}
			for _, call := range []string{"State().ReadFile(", "State().WriteFile(", "Dir().ReadFile(", "Dir().WriteFile("} {
				if strings.Contains(string(src), call) {
					t.Errorf("%s calls %s on the state dir: use clusterstate.Local's accessors", f.path, call)
				}
			}
		}
	}
}
