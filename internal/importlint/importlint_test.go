// Package importlint keeps the module's layering honest: it parses the
// import blocks of every non-test Go file in the module and fails on an
// import that crosses a boundary DESIGN.md and STYLE.md draw.
//
// It reads the source tree with go/parser rather than asking the go
// command, so it runs in milliseconds and needs nothing but the files.
// Build constraints are ignored on purpose: a file excluded on this
// platform must obey the rules too. Test files are exempt.
package importlint

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/cairnbackup/cairn"

// purePackages do no I/O. Their subpackages are held to the same rule.
var purePackages = []string{
	"core/sql", "core/spans", "core/keys", "core/hlc", "core/redact",
}

// ioPackages are the standard packages a pure package must not import.
var ioPackages = []string{"os", "net", "net/http", "os/exec", "io/ioutil", "syscall"}

// fileImport is one import of one file; Dir and File are slash-separated
// and relative to the module root.
type fileImport struct {
	Dir, File, Import string
}

// violation is an import that breaks a rule.
type violation struct {
	fileImport
	Rule string
}

func (v violation) String() string {
	return fmt.Sprintf("%s imports %q: %s", v.File, v.Import, v.Rule)
}

// under reports whether dir is p or below it.
func under(dir, p string) bool { return dir == p || strings.HasPrefix(dir, p+"/") }

// modulePath returns the import's path inside the module, and whether it
// is in the module at all.
func modulePath(imp string) (string, bool) {
	if imp == module {
		return "", true
	}
	rel, ok := strings.CutPrefix(imp, module+"/")
	return rel, ok
}

func isPure(dir string) bool {
	return slices.ContainsFunc(purePackages, func(p string) bool { return under(dir, p) })
}

// check applies every rule to one import and returns the rules it breaks.
func check(fi fileImport) []violation {
	var out []violation
	bad := func(rule string) { out = append(out, violation{fi, rule}) }
	rel, inModule := modulePath(fi.Import)
	switch {
	case under(fi.Dir, "sdk"):
		if inModule && (under(rel, "core") || under(rel, "plugins")) {
			bad("sdk/ must not import core/ or plugins/")
		}
	case under(fi.Dir, "core"):
		if inModule && (under(rel, "plugins") || under(rel, "cmd")) {
			bad("core/ must not import plugins/ or cmd/")
		}
	}
	if isPure(fi.Dir) {
		if slices.Contains(ioPackages, fi.Import) {
			bad("pure package " + fi.Dir + " must do no I/O")
		}
		if inModule && !isPure(rel) {
			bad("pure package " + fi.Dir + " must import only pure packages of the module")
		}
	}
	return out
}

// imports parses the import block of every non-test .go file under root,
// skipping testdata, vendor and directories the go command ignores.
func imports(root string) ([]fileImport, error) {
	var out []fileImport
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			// A nested module is not part of this one.
			if p != root {
				if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") ||
			strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return fmt.Errorf("parsing imports of %s: %w", rel, err)
		}
		for _, is := range f.Imports {
			imp, err := strconv.Unquote(is.Path.Value)
			if err != nil {
				return fmt.Errorf("reading an import of %s: %w", rel, err)
			}
			out = append(out, fileImport{Dir: path.Dir(rel), File: rel, Import: imp})
		}
		return nil
	})
	return out, err
}

func lint(root string) ([]violation, []fileImport, error) {
	all, err := imports(root)
	if err != nil {
		return nil, nil, err
	}
	var out []violation
	for _, fi := range all {
		out = append(out, check(fi)...)
	}
	return out, all, nil
}

// moduleRoot finds the directory holding this module's go.mod, upwards
// from the test's working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module "+module+"\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod of %s above the working directory", module)
		}
		dir = parent
	}
}

func TestImports(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	violations, all, err := lint(root)
	if err != nil {
		t.Fatal(err)
	}
	// Guard against passing vacuously after a move: every pure package and
	// the layers the rules name must still be found.
	dirs := map[string]bool{}
	for _, fi := range all {
		dirs[fi.Dir] = true
	}
	for _, p := range append([]string{"sdk", "core"}, purePackages...) {
		found := false
		for d := range dirs {
			if under(d, p) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no non-test Go file with imports under %s: update importlint's rules if it moved", p)
		}
	}
	if len(violations) > 0 {
		var lines []string
		for _, v := range violations {
			lines = append(lines, "\t"+v.String())
		}
		slices.Sort(lines)
		t.Errorf("%d forbidden imports:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}

// TestRules runs the linter over a small tree that breaks every rule once,
// alongside imports that are allowed, so a rule that stops firing is seen.
func TestRules(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	files := map[string][]string{
		"sdk/storage/a.go":          {module + "/core/cluster", module + "/plugins/s3/s3", module + "/sdk/internal/pb", "context"},
		"sdk/storage/a_test.go":     {module + "/core/cluster"}, // exempt
		"core/export/e.go":          {module + "/plugins/s3", module + "/cmd/cairn", module + "/sdk/storage", module + "/core/spans"},
		"core/sql/p.go":             {"os", "net/url", module + "/core/redact", module + "/core/hlc", module + "/core/cluster"},
		"core/spans/s.go":           {"net", "net/http", "syscall", "io/ioutil", "os/exec", "bytes", module + "/sdk/storage"},
		"core/keys/sub/k.go":        {"os"},
		"core/keysmith/k.go":        {"os"}, // not core/keys
		"core/hlc/testdata/x.go":    {"os"}, // testdata is skipped
		"cmd/cairn/main.go":         {module + "/core/cluster", module + "/plugins/s3"},
		"plugins/s3/main.go":        {module + "/core/cluster"},
		"core/locality/l.go":        {"fmt"},
		"core/redact/r.go":          {"net/url", "log/slog"},
		"core/hlc/h.go":             {"time", "sync"},
		"core/cluster/node.go":      {"os", "net", module + "/core/mvcc"},
		"sdk/storage/storagetest/k": {}, // not a Go file
	}
	for name, imps := range files {
		var b strings.Builder
		b.WriteString("package x\n\nimport (\n")
		for _, imp := range imps {
			fmt.Fprintf(&b, "\t_ %q\n", imp)
		}
		b.WriteString(")\n")
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	violations, _, err := lint(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range violations {
		got = append(got, v.File+" "+v.Import)
	}
	slices.Sort(got)
	want := []string{
		"core/export/e.go " + module + "/cmd/cairn",
		"core/export/e.go " + module + "/plugins/s3",
		"core/keys/sub/k.go os",
		"core/spans/s.go io/ioutil",
		"core/spans/s.go net",
		"core/spans/s.go net/http",
		"core/spans/s.go os/exec",
		"core/spans/s.go syscall",
		"core/spans/s.go " + module + "/sdk/storage",
		"core/sql/p.go os",
		"core/sql/p.go " + module + "/core/cluster",
		"sdk/storage/a.go " + module + "/core/cluster",
		"sdk/storage/a.go " + module + "/plugins/s3/s3",
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("violations:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
	for _, v := range violations {
		if !strings.Contains(v.String(), v.File) || !strings.Contains(v.String(), strconv.Quote(v.Import)) {
			t.Errorf("message %q does not name the file and the import", v)
		}
	}
}
