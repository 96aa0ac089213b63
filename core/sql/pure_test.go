package sql

import (
	goparser "go/parser"
	gotoken "go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPure keeps the parser free of I/O: its non-test files may import only
// the packages listed here.
func TestPure(t *testing.T) {
	t.Parallel()
	allowed := map[string]bool{
		"errors": true, "fmt": true, "maps": true, "net/url": true, "slices": true,
		"strconv": true, "strings": true, "time": true, "unicode": true, "unicode/utf8": true,
		"github.com/cairnbackup/cairn/core/hlc":    true,
		"github.com/cairnbackup/cairn/core/redact": true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := gotoken.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := goparser.ParseFile(fset, name, nil, goparser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !allowed[path] {
				t.Errorf("%s imports %s, which core/sql must not use", name, path)
			}
		}
	}
}
