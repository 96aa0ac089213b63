package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestRestoreMatchesSourceAtEndTime backs movr up through the CLI, reads
// the backup's end time from `backups show --format json`, restores it
// with `sql -e RESTORE`, and checks that the fingerprint of movr at that
// time equals the fingerprint of the restored database.
func TestRestoreMatchesSourceAtEndTime(t *testing.T) {
	dir := t.TempDir()
	mustRun := func(args ...string) string {
		t.Helper()
		out, errOut, code := cairn(t, dir, args...)
		if code != 0 {
			t.Fatalf("cairn %s: exit=%d\n%s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	mustRun("workload", "init", "movr", "--rows", "300", "--seed", "3")
	mustRun("backup", "--database", "movr", "--into", "nodelocal://1/fp")
	// Writes after the backup must not show in the restore.
	mustRun("workload", "init", "movr", "--rows", "50", "--seed", "4", "--db", "other")

	var list []map[string]string
	if err := json.Unmarshal([]byte(mustRun("backups", "nodelocal://1/fp", "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0]["path"] == "" {
		t.Fatalf("backups --format json = %v, want one path", list)
	}

	var show []map[string]string
	if err := json.Unmarshal([]byte(mustRun("backups", "show", "nodelocal://1/fp", "--format", "json", "--check-files")), &show); err != nil {
		t.Fatal(err)
	}
	if len(show) == 0 {
		t.Fatal("backups show: no tables")
	}
	endTS := show[0]["end_ts"]
	tables := map[string]bool{}
	for _, r := range show {
		if r["end_ts"] != endTS || r["path"] != list[0]["path"] || r["database_name"] != "movr" || r["backup_type"] != "full" {
			t.Fatalf("backups show row %v: want database movr, end_ts %s, path %s", r, endTS, list[0]["path"])
		}
		tables[r["table_name"]] = true
	}
	for _, want := range []string{"users", "vehicles", "rides", "promo_codes"} {
		if !tables[want] {
			t.Errorf("backups show: no table %s in %v", want, tables)
		}
	}

	mustRun("sql", "-e", "RESTORE DATABASE movr FROM LATEST IN 'nodelocal://1/fp' WITH new_db_name = 'm2'")

	fp := func(args ...string) (ts, sum string) {
		t.Helper()
		out := strings.TrimSpace(mustRun(append([]string{"fingerprint"}, args...)...))
		// "<db> at <ts>: <hex> rows=<n>"
		_, rest, ok := strings.Cut(out, " at ")
		ts, sum, ok2 := strings.Cut(rest, ": ")
		if !ok || !ok2 || !strings.Contains(sum, " rows=") {
			t.Fatalf("fingerprint output %q", out)
		}
		return ts, sum
	}
	ts, src := fp("--database", "movr", "--as-of", endTS)
	if ts != endTS {
		t.Errorf("fingerprint --as-of %s read at %s", endTS, ts)
	}
	_, dst := fp("--database", "m2")
	if src != dst {
		t.Fatalf("fingerprint of movr at %s = %s, of the restore m2 = %s", endTS, src, dst)
	}
	if strings.HasSuffix(src, " rows=0") {
		t.Fatalf("fingerprint %s: want rows", src)
	}
	// The fingerprint tells databases apart.
	if _, other := fp("--database", "other"); other == src {
		t.Fatalf("fingerprints of movr and other are both %s", src)
	}
}

// TestHelp checks that --help of every command exits 0, writes to stdout
// only, and mentions each of the command's flags.
func TestHelp(t *testing.T) {
	var walk func(path []string, cmds []*cli.Command)
	n := 0
	walk = func(path []string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			p := append(slices.Clone(path), cmd.Name)
			n++
			t.Run(strings.Join(p, "_"), func(t *testing.T) {
				out, errOut, code := cairn(t, t.TempDir(), append(slices.Clone(p), "--help")...)
				if code != 0 || errOut != "" {
					t.Fatalf("cairn %s --help: exit=%d, stderr %q", strings.Join(p, " "), code, errOut)
				}
				if !strings.Contains(out, "cairn "+strings.Join(p, " ")) {
					t.Errorf("help does not name the command:\n%s", out)
				}
				for _, f := range cmd.Flags {
					name := f.Names()[0]
					dash := "--"
					if len(name) == 1 {
						dash = "-"
					}
					if !strings.Contains(out, dash+name) {
						t.Errorf("help does not mention %s%s:\n%s", dash, name, out)
					}
				}
				for _, sub := range cmd.Subcommands {
					if !strings.Contains(out, sub.Name) {
						t.Errorf("help does not mention subcommand %s:\n%s", sub.Name, out)
					}
				}
			})
			walk(p, cmd.Subcommands)
		}
	}
	walk(nil, newApp().Commands)
	if n < 15 {
		t.Fatalf("walked %d commands, want every command and subcommand", n)
	}

	out, errOut, code := cairn(t, t.TempDir(), "--help")
	if code != 0 || errOut != "" {
		t.Fatalf("cairn --help: exit=%d, stderr %q", code, errOut)
	}
	for _, cmd := range newApp().Commands {
		if !strings.Contains(out, cmd.Name) {
			t.Errorf("cairn --help does not list %s", cmd.Name)
		}
	}
	// Without arguments, cairn and a group of subcommands show help.
	for _, args := range [][]string{{}, {"jobs"}, {"workload"}, {"user"}} {
		out, errOut, code := cairn(t, t.TempDir(), args...)
		if code != 0 || errOut != "" || !strings.Contains(out, "USAGE") {
			t.Errorf("cairn %v: exit=%d, stderr %q, stdout %q", args, code, errOut, out)
		}
	}
}

func TestPermuteArgs(t *testing.T) {
	app := newApp()
	harden(app)
	for _, tc := range []struct{ in, want string }{
		{"cairn workload init movr --rows 400", "cairn workload init --rows 400 movr"},
		{"cairn backups nodelocal://1/b --format json -v", "cairn backups --format json -v nodelocal://1/b"},
		{"cairn backups show nodelocal://1/b --check-files --subdir=x", "cairn backups show --check-files --subdir=x nodelocal://1/b"},
		{"cairn backup --as-of -10s --into u --detached", "cairn backup --as-of -10s --into u --detached"},
		{"cairn jobs show 3 --wait", "cairn jobs show --wait 3"},
		{"cairn sql -e x a -- -b --c", "cairn sql -e x a -- -b --c"},
		{"cairn jobs --bogus list", "cairn jobs --bogus list"},
		{"cairn nosuch --x y", "cairn nosuch --x y"},
		{"cairn user grant alice BACKUP --nodes 3", "cairn user grant --nodes 3 alice BACKUP"},
	} {
		got := strings.Join(permuteArgs(app, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("permuteArgs(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
