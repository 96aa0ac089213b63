package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
)

// The scripts in testdata/*.txt drive the CLI end to end. A script is a
// sequence of blocks separated by blank lines:
//
//	# a comment
//	cairn workload init movr --rows 400
//	----
//	loaded 400 rows, 332.7 KiB into movr
//
// The command line is split like a shell would (single and double quotes,
// backslash escapes outside single quotes). The expected output follows
// "----" up to the next blank line; output that holds blank lines is
// written between "----\n----" and "----\n----". A command that fails
// prints "exit=<code>" and then what main writes to stderr.
//
// Every script gets its own data directory, shared by its commands; the
// runner adds --data-dir and --nodes 3 to each command that takes them and
// was not given them. Output is normalised (see normalize) so that times,
// backup subdirectories and the data directory do not make it differ from
// run to run.
//
// go test ./cmd/cairn -rewrite writes the actual output into the scripts.

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/*.txt scripts")

const testNodes = "3"

// cairn runs the CLI with args (without the program name) against the
// cluster in dir, and returns stdout, stderr (with the error as main
// prints it) and the exit code main would return.
func cairn(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := withClusterFlags(append([]string{"cairn"}, args...), dir)
	var out, errOut bytes.Buffer
	if err := run(ctx, argv, &out, &errOut); err != nil {
		code = reportError(&errOut, err)
	}
	return out.String(), errOut.String(), code
}

// withClusterFlags inserts --data-dir and --nodes after the command path
// when the command takes them and argv does not set them.
func withClusterFlags(argv []string, dir string) []string {
	cmd, n := commandPath(newApp().Commands, argv[1:])
	if cmd == nil {
		return argv
	}
	var extra []string
	has := func(name string) bool {
		return slices.ContainsFunc(argv, func(a string) bool {
			return a == "--"+name || strings.HasPrefix(a, "--"+name+"=")
		})
	}
	if lookupFlag(cmd, "data-dir") != nil && !has("data-dir") {
		extra = append(extra, "--data-dir", dir)
	}
	if lookupFlag(cmd, "nodes") != nil && !has("nodes") {
		extra = append(extra, "--nodes", testNodes)
	}
	return slices.Concat(argv[:1+n], extra, argv[1+n:])
}

var normalizers = []struct {
	re   *regexp.Regexp
	repl string
}{
	// Backup subdirectories, named by end time: 2026/11/25-041152.09.
	{regexp.MustCompile(`\b\d{4}/\d{2}/\d{2}-\d{6}\.\d{2}\b`), "<subdir>"},
	// RFC 3339 times.
	{regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})`), "<time>"},
	// HLC timestamps: wall nanos and a 10-digit logical part.
	{regexp.MustCompile(`\b\d{19}\.\d{10}\b`), "<ts>"},
	// Durations as Go prints them.
	{regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|ms|s|m|h)\b`), "<duration>"},
	// Loopback addresses.
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:<port>"},
	// Table padding depends on the width of the values normalised above;
	// indentation stays.
	{regexp.MustCompile(`(\S)  +`), "${1}  "},
	{regexp.MustCompile(`(?m)[ \t]+$`), ""},
}

// normalize replaces what differs from run to run with placeholders.
func normalize(s, dir string) string {
	if dir != "" {
		s = strings.ReplaceAll(s, dir, "<data-dir>")
	}
	for _, n := range normalizers {
		s = n.re.ReplaceAllString(s, n.repl)
	}
	return s
}

// splitWords splits a command line the way a POSIX shell would, for the
// quoting that scripts use.
func splitWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", line)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case ch == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) && strings.IndexByte(`"\$`+"`", line[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, fmt.Errorf("unterminated \" in %q", line)
			}
			inWord = true
		case ch == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case unicode.IsSpace(rune(ch)):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// maskColumns replaces the values of the named columns, in tables (whose
// header holds the column names) and in JSON objects, with <masked>: for
// values that differ between runs, such as compressed file sizes.
func maskColumns(out string, cols []string) string {
	if len(cols) == 0 {
		return out
	}
	for _, c := range cols {
		re := regexp.MustCompile(`("` + regexp.QuoteMeta(c) + `": )"[^"]*"`)
		out = re.ReplaceAllString(out, `$1"<masked>"`)
	}
	header := regexp.MustCompile(`^[a-z_]+( +[a-z_]+)+$`)
	lines := strings.Split(out, "\n")
	var offsets []int // start of each masked column and of the one after
	for i, l := range lines {
		if header.MatchString(l) {
			offsets = offsets[:0]
			starts := regexp.MustCompile(`[a-z_]+`).FindAllStringIndex(l, -1)
			for k, s := range starts {
				if slices.Contains(cols, l[s[0]:s[1]]) {
					end := -1
					if k+1 < len(starts) {
						end = starts[k+1][0]
					}
					offsets = append(offsets, s[0], end)
				}
			}
			continue
		}
		if len(offsets) == 0 || strings.HasPrefix(l, "(") {
			offsets = offsets[:0]
			continue
		}
		// Right to left, so that earlier offsets stay valid.
		for k := len(offsets) - 2; k >= 0; k -= 2 {
			start, end := offsets[k], offsets[k+1]
			if start > len(l) {
				continue
			}
			if end < 0 || end > len(l) {
				l = l[:start] + "<masked>"
			} else {
				l = l[:start] + "<masked>  " + l[end:]
			}
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n")
}

// scriptBlock is one command of a script with its expected output.
type scriptBlock struct {
	comments []string // lines before the command
	mask     []string // columns whose values are masked, from "mask a,b"
	cmd      string
	line     int // of cmd, 1-based
	want     string
}

func parseScript(text string) ([]scriptBlock, error) {
	lines := strings.Split(text, "\n")
	var blocks []scriptBlock
	var b scriptBlock
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.TrimSpace(l) == "":
			if b.cmd != "" {
				return nil, fmt.Errorf("line %d: command %q has no ---- line", b.line, b.cmd)
			}
			if len(b.comments) > 0 {
				b.comments = append(b.comments, "")
			}
		case strings.HasPrefix(l, "#"):
			if b.cmd != "" {
				return nil, fmt.Errorf("line %d: comment between a command and its ----", i+1)
			}
			b.comments = append(b.comments, l)
		case strings.HasPrefix(l, "mask "):
			if b.cmd != "" {
				return nil, fmt.Errorf("line %d: mask goes before the command", i+1)
			}
			b.mask = strings.Split(strings.TrimSpace(strings.TrimPrefix(l, "mask ")), ",")
		case b.cmd == "":
			if !strings.HasPrefix(l, "cairn ") && l != "cairn" {
				return nil, fmt.Errorf("line %d: a command starts with \"cairn\", got %q", i+1, l)
			}
			b.cmd, b.line = l, i+1
		case l == "----":
			var out []string
			if i+1 < len(lines) && lines[i+1] == "----" {
				// Output with blank lines, up to "----\n----".
				i += 2
				for ; i < len(lines) && !(lines[i] == "----" && i+1 < len(lines) && lines[i+1] == "----"); i++ {
					out = append(out, lines[i])
				}
				if i >= len(lines) {
					return nil, fmt.Errorf("line %d: output of %q has no closing ----/----", b.line, b.cmd)
				}
				i++
			} else {
				for i+1 < len(lines) && strings.TrimSpace(lines[i+1]) != "" {
					i++
					out = append(out, lines[i])
				}
			}
			b.want = strings.Join(out, "\n")
			blocks = append(blocks, b)
			b = scriptBlock{}
		default:
			return nil, fmt.Errorf("line %d: want ---- after command %q, got %q", i+1, b.cmd, l)
		}
	}
	if b.cmd != "" {
		return nil, fmt.Errorf("line %d: command %q has no ---- line", b.line, b.cmd)
	}
	return blocks, nil
}

func formatScript(blocks []scriptBlock) string {
	var sb strings.Builder
	for i, b := range blocks {
		if i > 0 {
			sb.WriteString("\n")
		}
		for _, c := range b.comments {
			if c == "" && i > 0 {
				continue
			}
			sb.WriteString(c + "\n")
		}
		if len(b.mask) > 0 {
			sb.WriteString("mask " + strings.Join(b.mask, ",") + "\n")
		}
		sb.WriteString(b.cmd + "\n----\n")
		if strings.Contains(b.want, "\n\n") || strings.HasPrefix(b.want, "\n") {
			sb.WriteString("----\n" + b.want + "\n----\n----\n")
		} else if b.want != "" {
			sb.WriteString(b.want + "\n")
		}
	}
	return sb.String()
}

// runScriptCommand runs one command line and renders what the script
// expects to see.
func runScriptCommand(t *testing.T, dir string, b scriptBlock) string {
	t.Helper()
	words, err := splitWords(b.cmd)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := cairn(t, dir, words[1:]...)
	got := maskColumns(strings.TrimRight(stdout, "\n"), b.mask)
	if code != 0 {
		if got != "" {
			got += "\n"
		}
		got += fmt.Sprintf("exit=%d\n%s", code, strings.TrimRight(stderr, "\n"))
	}
	return normalize(got, dir)
}

func TestScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			blocks, err := parseScript(string(text))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			dir := t.TempDir()
			for i := range blocks {
				b := &blocks[i]
				got := runScriptCommand(t, dir, *b)
				if *rewrite {
					b.want = got
					continue
				}
				if got != b.want {
					t.Errorf("%s:%d: %s\n--- want:\n%s\n--- got:\n%s", path, b.line, b.cmd, b.want, got)
				}
			}
			if *rewrite {
				if err := os.WriteFile(path, []byte(formatScript(blocks)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestParseScriptRoundTrip(t *testing.T) {
	text := `# loads
cairn a 'b c'
----
one
two

cairn x
----

# blank lines inside
cairn y
----
----
a

b
----
----
`
	blocks, err := parseScript(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 3 || blocks[1].want != "" || blocks[2].want != "a\n\nb" || blocks[0].want != "one\ntwo" {
		t.Fatalf("parsed %+v", blocks)
	}
	if got := formatScript(blocks); got != text {
		t.Fatalf("formatScript:\n%s\nwant:\n%s", got, text)
	}
	for _, bad := range []string{"cairn a\n", "cairn a\nb\n----\n", "ls\n----\n", "cairn a\n----\n----\nx\n"} {
		if _, err := parseScript(bad); err == nil {
			t.Errorf("parseScript(%q): want an error", bad)
		}
	}
}

func TestMaskColumns(t *testing.T) {
	in := "a    size_bytes  c\n1    100         x\n22   7           \n(2 rows)\nnot  a  table\n" +
		`[{"size_bytes": "9", "c": "x"}]`
	got := maskColumns(in, []string{"size_bytes"})
	for _, w := range []string{"1    <masked>  x", "22   <masked>  ", "not  a  table", `"size_bytes": "<masked>"`, `"c": "x"`} {
		if !strings.Contains(got, w) {
			t.Errorf("maskColumns: want %q in\n%s", w, got)
		}
	}
	if strings.Contains(got, "100") || !strings.Contains(got, "a    size_bytes  c") {
		t.Errorf("maskColumns:\n%s", got)
	}
}

func TestSplitWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`cairn sql -e "RESTORE x FROM LATEST IN 'nodelocal://1/b'"`, []string{"cairn", "sql", "-e", "RESTORE x FROM LATEST IN 'nodelocal://1/b'"}},
		{`a 'b "c"' d\ e "f\"g"`, []string{"a", `b "c"`, "d e", `f"g`}},
		{`a ''  "" b`, []string{"a", "", "", "b"}},
	} {
		got, err := splitWords(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := splitWords(`a "b`); err == nil {
		t.Error("unterminated quote: want an error")
	}
}
