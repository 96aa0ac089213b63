package sql

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/redact"
)

const (
	loc1 = "nodelocal://1/backups"
	usE  = "s3://b/us-east?COCKROACH_LOCALITY=region%3Dus-east1"
	usW  = "s3://b/us-west?COCKROACH_LOCALITY=region=us-west1"
	def  = "s3://b/default?COCKROACH_LOCALITY=default"
)

type validCase struct {
	sql  string
	want Statement
	// canonical is the expected String(); "" means the test only checks
	// that it parses back to want.
	canonical string
}

var validCases = []validCase{
	{sql: "BACKUP INTO 'nodelocal://1/backups'",
		want:      &Backup{URIs: []string{loc1}},
		canonical: "BACKUP INTO 'nodelocal://1/backups'"},
	{sql: "backup into 'nodelocal://1/backups';",
		want: &Backup{URIs: []string{loc1}}},
	{sql: "BACKUP DATABASE movr INTO 'nodelocal://1/backups'",
		want: &Backup{Targets: Targets{Databases: []string{"movr"}}, URIs: []string{loc1}}},
	{sql: `BACKUP DATABASE Movr, "Bank", "in", "a""b" INTO 'nodelocal://1/backups'`,
		want:      &Backup{Targets: Targets{Databases: []string{"movr", "Bank", "in", `a"b`}}, URIs: []string{loc1}},
		canonical: `BACKUP DATABASE movr, "Bank", "in", "a""b" INTO 'nodelocal://1/backups'`},
	{sql: "BACKUP TABLE movr.users, movr.* , bank.\"Acc\" INTO 'nodelocal://1/backups'",
		want:      &Backup{Targets: Targets{Tables: []TableName{{"movr", "users"}, {"movr", "*"}, {"bank", "Acc"}}}, URIs: []string{loc1}},
		canonical: `BACKUP TABLE movr.users, movr.*, bank."Acc" INTO 'nodelocal://1/backups'`},
	{sql: "BACKUP INTO LATEST IN 'nodelocal://1/backups'",
		want: &Backup{Latest: true, URIs: []string{loc1}}},
	{sql: "BACKUP INTO '2026/11/24-004726.00' IN 'nodelocal://1/backups'",
		want:      &Backup{Subdir: "2026/11/24-004726.00", URIs: []string{loc1}},
		canonical: "BACKUP INTO '2026/11/24-004726.00' IN 'nodelocal://1/backups'"},
	{sql: "BACKUP INTO 'nodelocal://1/backups' AS OF SYSTEM TIME '-10s'",
		want:      &Backup{URIs: []string{loc1}, AsOf: &AsOf{Offset: -10 * time.Second, Relative: true}},
		canonical: "BACKUP INTO 'nodelocal://1/backups' AS OF SYSTEM TIME '-10s'"},
	{sql: "BACKUP INTO 'nodelocal://1/backups' AS OF SYSTEM TIME '-1h30m'",
		want: &Backup{URIs: []string{loc1}, AsOf: &AsOf{Offset: -90 * time.Minute, Relative: true}}},
	{sql: "BACKUP INTO 'nodelocal://1/backups' AS OF SYSTEM TIME '1732412345000000000.0000000002'",
		want:      &Backup{URIs: []string{loc1}, AsOf: &AsOf{Timestamp: hlc.Timestamp{WallTime: 1732412345000000000, Logical: 2}}},
		canonical: "BACKUP INTO 'nodelocal://1/backups' AS OF SYSTEM TIME '1732412345000000000.0000000002'"},
	{sql: "BACKUP INTO 'nodelocal://1/backups' AS OF SYSTEM TIME '2026-11-24T00:47:26Z'",
		want: &Backup{URIs: []string{loc1}, AsOf: &AsOf{Timestamp: hlc.Timestamp{WallTime: time.Date(2026, 11, 24, 0, 47, 26, 0, time.UTC).UnixNano()}}}},
	{sql: "BACKUP INTO 'nodelocal://1/backups' WITH revision_history, detached",
		want:      &Backup{URIs: []string{loc1}, Options: BackupOptions{RevisionHistory: true, Detached: true}},
		canonical: "BACKUP INTO 'nodelocal://1/backups' WITH revision_history, detached"},
	{sql: "BACKUP INTO 'nodelocal://1/backups' WITH detached = TRUE, revision_history = false",
		want:      &Backup{URIs: []string{loc1}, Options: BackupOptions{Detached: true}},
		canonical: "BACKUP INTO 'nodelocal://1/backups' WITH detached"},
	{sql: "BACKUP INTO 'nodelocal://1/backups' WITH OPTIONS (revision_history, execution locality = 'region=us-east1,zone=a')",
		want:      &Backup{URIs: []string{loc1}, Options: BackupOptions{RevisionHistory: true, ExecutionLocality: "region=us-east1,zone=a"}},
		canonical: "BACKUP INTO 'nodelocal://1/backups' WITH revision_history, EXECUTION LOCALITY = 'region=us-east1,zone=a'"},
	{sql: "BACKUP INTO 'nodelocal://1/backups' WITH encryption_passphrase = 'it''s secret'",
		want:      &Backup{URIs: []string{loc1}, Options: BackupOptions{EncryptionPassphrase: "it's secret"}},
		canonical: "BACKUP INTO 'nodelocal://1/backups' WITH encryption_passphrase = 'redacted'"},
	{sql: "BACKUP INTO 'nodelocal://1/backups' WITH kms = ('aws-kms:///k1?REGION=us-east-1', 'gcp-kms:///k2')",
		want: &Backup{URIs: []string{loc1}, Options: BackupOptions{KMS: []string{"aws-kms:///k1?REGION=us-east-1", "gcp-kms:///k2"}}}},
	{sql: "BACKUP INTO 'nodelocal://1/backups' WITH kms = 'aws-kms:///k1?AWS_SECRET_ACCESS_KEY=shh'",
		want:      &Backup{URIs: []string{loc1}, Options: BackupOptions{KMS: []string{"aws-kms:///k1?AWS_SECRET_ACCESS_KEY=shh"}}},
		canonical: "BACKUP INTO 'nodelocal://1/backups' WITH kms = 'aws-kms:///k1?AWS_SECRET_ACCESS_KEY=redacted'"},
	{sql: "BACKUP INTO LATEST IN 'nodelocal://1/backups' WITH incremental_location = 'nodelocal://2/inc'",
		want: &Backup{Latest: true, URIs: []string{loc1}, Options: BackupOptions{IncrementalLocation: []string{"nodelocal://2/inc"}}}},
	{sql: "BACKUP DATABASE movr INTO ('" + usE + "', '" + def + "', '" + usW + "')",
		want:      &Backup{Targets: Targets{Databases: []string{"movr"}}, URIs: []string{usE, def, usW}},
		canonical: "BACKUP DATABASE movr INTO ('" + usE + "', '" + def + "', '" + usW + "')"},
	{sql: "BACKUP INTO 's3://b/p?COCKROACH_LOCALITY=default&AWS_SECRET_ACCESS_KEY=x'",
		want:      &Backup{URIs: []string{"s3://b/p?COCKROACH_LOCALITY=default&AWS_SECRET_ACCESS_KEY=x"}},
		canonical: "BACKUP INTO 's3://b/p?COCKROACH_LOCALITY=default&AWS_SECRET_ACCESS_KEY=redacted'"},
	{sql: "-- nightly\nBACKUP /* all */ INTO\n\t'nodelocal://1/backups'\n",
		want: &Backup{URIs: []string{loc1}}},
	{sql: "RESTORE FROM LATEST IN 'nodelocal://1/backups'",
		want:      &Restore{Latest: true, URIs: []string{loc1}},
		canonical: "RESTORE FROM LATEST IN 'nodelocal://1/backups'"},
	{sql: "RESTORE DATABASE movr FROM '2026/11/24-004726.00' IN 'nodelocal://1/backups' WITH new_db_name = 'movr2', detached",
		want:      &Restore{Targets: Targets{Databases: []string{"movr"}}, Subdir: "2026/11/24-004726.00", URIs: []string{loc1}, Options: RestoreOptions{NewDBName: "movr2", Detached: true}},
		canonical: "RESTORE DATABASE movr FROM '2026/11/24-004726.00' IN 'nodelocal://1/backups' WITH new_db_name = 'movr2', detached"},
	{sql: "RESTORE TABLE movr.users FROM LATEST IN 'nodelocal://1/backups' AS OF SYSTEM TIME '1732412345000000000' WITH into_db = 'scratch', schema_only, verify_backup_table_data",
		want: &Restore{Targets: Targets{Tables: []TableName{{"movr", "users"}}}, Latest: true, URIs: []string{loc1},
			AsOf:    &AsOf{Timestamp: hlc.Timestamp{WallTime: 1732412345000000000}},
			Options: RestoreOptions{IntoDB: "scratch", SchemaOnly: true, VerifyBackupTableData: true}},
		canonical: "RESTORE TABLE movr.users FROM LATEST IN 'nodelocal://1/backups' AS OF SYSTEM TIME '1732412345000000000.0000000000' WITH into_db = 'scratch', schema_only, verify_backup_table_data"},
	{sql: "RESTORE DATABASE a, b FROM LATEST IN ('" + def + "', '" + usE + "') WITH OPTIONS (encryption_passphrase = 'pw', execution locality = 'region=us-east1', incremental_location = ('" + def + "', '" + usE + "'))",
		want: &Restore{Targets: Targets{Databases: []string{"a", "b"}}, Latest: true, URIs: []string{def, usE},
			Options: RestoreOptions{EncryptionPassphrase: "pw", ExecutionLocality: "region=us-east1", IncrementalLocation: []string{def, usE}}}},
	{sql: "RESTORE FROM LATEST IN 'nodelocal://1/backups' WITH kms = 'aws-kms:///k1', detached = false",
		want: &Restore{Latest: true, URIs: []string{loc1}, Options: RestoreOptions{KMS: []string{"aws-kms:///k1"}}}},
	{sql: "SHOW BACKUPS IN 'nodelocal://1/backups'",
		want:      &ShowBackups{URIs: []string{loc1}},
		canonical: "SHOW BACKUPS IN 'nodelocal://1/backups'"},
	{sql: "SHOW BACKUP FROM LATEST IN 'nodelocal://1/backups'",
		want: &ShowBackup{Latest: true, URIs: []string{loc1}}},
	{sql: "show backup from '2026/11/24-004726.00' in 'nodelocal://1/backups' with check_files",
		want:      &ShowBackup{Subdir: "2026/11/24-004726.00", URIs: []string{loc1}, CheckFiles: true},
		canonical: "SHOW BACKUP FROM '2026/11/24-004726.00' IN 'nodelocal://1/backups' WITH check_files"},
	{sql: "SHOW BACKUP LATEST IN 'nodelocal://1/backups'",
		want: &ShowBackup{Latest: true, URIs: []string{loc1}}},
	{sql: "SHOW JOBS", want: &ShowJobs{}, canonical: "SHOW JOBS"},
	{sql: "SHOW JOB 42", want: &ShowJob{ID: 42}, canonical: "SHOW JOB 42"},
	{sql: "SHOW JOB 42 WHEN COMPLETE;", want: &ShowJob{ID: 42, WhenComplete: true}, canonical: "SHOW JOB 42 WHEN COMPLETE"},
	{sql: "show job when complete 9223372036854775807", want: &ShowJob{ID: 9223372036854775807, WhenComplete: true}},
	{sql: "PAUSE JOB 1", want: &ControlJob{Op: JobPause, ID: 1}, canonical: "PAUSE JOB 1"},
	{sql: "Resume Job 17", want: &ControlJob{Op: JobResume, ID: 17}, canonical: "RESUME JOB 17"},
	{sql: "CANCEL JOB 00123 ;", want: &ControlJob{Op: JobCancel, ID: 123}, canonical: "CANCEL JOB 123"},
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	for _, tc := range validCases {
		got, err := Parse(tc.sql)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.sql, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q)\n got %#v\nwant %#v", tc.sql, got, tc.want)
			continue
		}
		s := got.String()
		if tc.canonical != "" && s != tc.canonical {
			t.Errorf("Parse(%q).String()\n got %s\nwant %s", tc.sql, s, tc.canonical)
		}
		if hasSecrets(got) {
			if strings.Contains(s, "shh") || strings.Contains(s, "it's secret") || strings.Contains(s, "'pw'") {
				t.Errorf("String() of %q shows a secret: %s", tc.sql, s)
			}
			continue
		}
		again, err := Parse(s)
		if err != nil {
			t.Errorf("Parse(String()) of %q: %v", tc.sql, err)
		} else if !reflect.DeepEqual(again, got) {
			t.Errorf("round trip of %q via %q\n got %#v\nwant %#v", tc.sql, s, again, got)
		}
	}
}

type errorCase struct {
	sql       string
	line, col int
	msg       string // substring of Msg
	syntax    bool   // ErrSyntax rather than ErrInvalid
}

var errorCases = []errorCase{
	// Syntax.
	{"", 1, 1, "expected BACKUP, RESTORE, SHOW, PAUSE, RESUME or CANCEL, found end of input", true},
	{"BACKUP DATABASE movr TO 'nodelocal://1/b'", 1, 22, `expected "," or INTO, found "TO"`, true},
	{"BACKUP INTO", 1, 12, "expected LATEST, string literal or \"(\", found end of input", true},
	{"BACKUP DATABASE INTO 'nodelocal://1/b'", 1, 17, `expected database name, found "INTO"`, true},
	{"BACKUP DATABASE a, INTO 'nodelocal://1/b'", 1, 20, "expected database name", true},
	{"BACKUP TABLE movr. INTO 'nodelocal://1/b'", 1, 20, `expected "*" or table name, found "INTO"`, true},
	{"BACKUP INTO LATEST 'nodelocal://1/b'", 1, 20, "expected IN", true},
	{"BACKUP INTO ('nodelocal://1/b'", 1, 31, `expected "," or ")", found end of input`, true},
	{"BACKUP INTO ()", 1, 14, "expected string literal", true},
	{"BACKUP INTO 'nodelocal://1/b' AS OF TIME '-1s'", 1, 37, "expected SYSTEM", true},
	{"BACKUP INTO 'nodelocal://1/b' AS OF SYSTEM TIME -10", 1, 49, "expected string literal", true},
	{"BACKUP INTO 'nodelocal://1/b' WITH", 1, 35, "expected OPTIONS or option name, found end of input", true},
	{"BACKUP INTO 'nodelocal://1/b' WITH OPTIONS revision_history", 1, 44, `expected "("`, true},
	{"BACKUP INTO 'nodelocal://1/b' WITH OPTIONS (detached", 1, 53, `expected "=", "," or ")"`, true},
	{"BACKUP INTO 'nodelocal://1/b' WITH encryption_passphrase", 1, 57, `expected "="`, true},
	{"BACKUP INTO 'nodelocal://1/b' WITH execution = 'region=a'", 1, 46, "expected LOCALITY", true},
	{"BACKUP INTO 'nodelocal://1/b' WITH detached foo", 1, 45, `expected "=", ",", ";" or end of input, found "foo"`, true},
	{"BACKUP INTO 'nodelocal://1/b'; SHOW JOBS", 1, 32, "expected end of input", true},
	{"RESTORE FROM 'nodelocal://1/b'", 1, 31, "expected IN, found end of input", true},
	{"RESTORE DATABASE movr", 1, 22, `expected "," or FROM`, true},
	{"SHOW", 1, 5, "expected BACKUPS, BACKUP, JOBS or JOB", true},
	{"SHOW JOB", 1, 9, "expected WHEN or job ID, found end of input", true},
	{"SHOW JOB 5 WHEN", 1, 16, "expected COMPLETE", true},
	{"PAUSE JOB 'abc'", 1, 11, `expected job ID, found "'abc'"`, true},
	{"CANCEL 5", 1, 8, "expected JOB", true},
	{"BACKUP INTO 'nodelocal://1/b", 1, 13, "unterminated string literal", true},
	{"BACKUP DATABASE \"movr INTO 'x'", 1, 17, "unterminated quoted identifier", true},
	{"BACKUP INTO 'nodelocal://1/b' /* to", 1, 31, "unterminated comment", true},
	{"BACKUP INTO 'nodelocal://1/b' # comment", 1, 31, `unexpected character '#'`, true},
	{"BACKUP\n  DATABASE movr\n  INTO\n  'nodelocal://1/b'\n  WITH, detached", 5, 7, "expected OPTIONS or option name", true},
	// Col counts characters, Pos bytes.
	{"BACKUP DATABASE é TO 'x'", 1, 19, `expected "," or INTO, found "TO"`, true},
	// Semantics.
	{"BACKUP DATABASE \"\" INTO 'nodelocal://1/b'", 1, 17, "empty identifier", false},
	{"BACKUP DATABASE a, b, a INTO 'nodelocal://1/b'", 1, 23, "database a listed twice", false},
	{"BACKUP TABLE users INTO 'nodelocal://1/b'", 1, 14, "must be qualified with its database", false},
	{"BACKUP INTO '' IN 'nodelocal://1/b'", 1, 13, "empty subdirectory", false},
	{"RESTORE FROM '' IN 'nodelocal://1/b'", 1, 14, "empty subdirectory", false},
	{"BACKUP INTO 'backups'", 1, 13, "has no scheme", false},
	{"BACKUP INTO 'nodelocal://1/%zz'", 1, 13, "invalid URI", false},
	{"BACKUP INTO 's3://b/p?a=%zz'", 1, 13, "invalid query in URI", false},
	{"BACKUP INTO 'nodelocal://1/b' WITH detached, detached", 1, 46, "option detached given twice", false},
	{"BACKUP INTO 'nodelocal://1/b' WITH incremental, detached", 1, 36, `unknown BACKUP option "incremental"; valid options: detached, encryption_passphrase, execution locality, incremental_location, kms, revision_history`, false},
	{"RESTORE FROM LATEST IN 'nodelocal://1/b' WITH revision_history", 1, 47, "unknown RESTORE option \"revision_history\"; valid options: detached, encryption_passphrase, execution locality, incremental_location, into_db, kms, new_db_name, schema_only, verify_backup_table_data", false},
	{"SHOW BACKUP FROM LATEST IN 'nodelocal://1/b' WITH detached", 1, 51, `unknown SHOW BACKUP option "detached"; valid options: check_files`, false},
	{"BACKUP INTO 'nodelocal://1/b' WITH detached = 'yes'", 1, 47, "option detached takes a boolean", false},
	{"BACKUP INTO 'nodelocal://1/b' WITH revision_history = 1", 1, 55, "takes a boolean", false},
	{"BACKUP INTO 'nodelocal://1/b' WITH encryption_passphrase = secret", 1, 60, "option encryption_passphrase takes a string literal", false},
	{"BACKUP INTO 'nodelocal://1/b' WITH encryption_passphrase = ''", 1, 60, "must not be empty", false},
	{"BACKUP INTO 'nodelocal://1/b' WITH kms = 42", 1, 42, "option kms takes a URI", false},
	{"BACKUP INTO 'nodelocal://1/b' WITH kms = 'not a uri'", 1, 42, "has no scheme", false},
	{"BACKUP INTO 'nodelocal://1/b' WITH encryption_passphrase = 'x', kms = 'aws-kms:///k'", 1, 65, "encryption_passphrase cannot be combined with kms", false},
	{"RESTORE FROM LATEST IN 'nodelocal://1/b' WITH kms = 'aws-kms:///k', encryption_passphrase = 'x'", 1, 69, "encryption_passphrase cannot be combined with kms", false},
	{"BACKUP INTO 'nodelocal://1/b' WITH execution locality = 'us-east1'", 1, 57, "invalid execution locality", false},
	{"BACKUP INTO 'nodelocal://1/b' WITH execution locality = ''", 1, 57, "invalid execution locality", false},
	{"RESTORE DATABASE a, b FROM LATEST IN 'nodelocal://1/b' WITH new_db_name = 'c'", 1, 61, "new_db_name can only be used when restoring a single DATABASE", false},
	{"RESTORE TABLE a.b FROM LATEST IN 'nodelocal://1/b' WITH new_db_name = 'c'", 1, 57, "new_db_name can only be used", false},
	{"RESTORE DATABASE a FROM LATEST IN 'nodelocal://1/b' WITH new_db_name = 'c', into_db = 'd'", 1, 77, "new_db_name cannot be combined with into_db", false},
	{"RESTORE DATABASE a FROM LATEST IN 'nodelocal://1/b' WITH into_db = 'd'", 1, 58, "into_db can only be used when restoring TABLE targets", false},
	{"RESTORE TABLE a.b FROM LATEST IN 'nodelocal://1/b' WITH into_db = ''", 1, 67, "empty identifier", false},
	{"BACKUP INTO ('" + usE + "', '" + def + "', 's3://b/d2?COCKROACH_LOCALITY=default')", 1, 114, "a second default URI: 's3://b/d2?COCKROACH_LOCALITY=default'", false},
	{"BACKUP INTO ('" + usE + "', '" + usW + "')", 1, 14, "need one with COCKROACH_LOCALITY=default", false},
	{"BACKUP INTO ('" + def + "', 's3://b/x')", 1, 59, "has no COCKROACH_LOCALITY parameter", false},
	{"BACKUP INTO ('" + def + "', '" + usE + "', 's3://b/e2?COCKROACH_LOCALITY=region%3Dus-east1')", 1, 114, "locality region=us-east1 given twice", false},
	{"BACKUP INTO '" + usE + "'", 1, 13, "a single collection URI must have COCKROACH_LOCALITY=default or none", false},
	{"BACKUP INTO ('" + def + "', 's3://b/x?COCKROACH_LOCALITY=useast')", 1, 59, "want default or one tier key=value", false},
	{"BACKUP INTO 'nodelocal://1/b' WITH incremental_location = ('" + usE + "', 'nodelocal://1/x')", 1, 115, "locality-aware incremental_location URI", false},
	{"BACKUP INTO 'nodelocal://1/b' AS OF SYSTEM TIME '10s'", 1, 49, "must be negative", false},
	{"BACKUP INTO 'nodelocal://1/b' AS OF SYSTEM TIME 'yesterday'", 1, 49, "want a negative interval", false},
	{"BACKUP INTO 'nodelocal://1/b' AS OF SYSTEM TIME '1969-01-01'", 1, 49, "out of range", false},
	{"BACKUP INTO 'nodelocal://1/b' AS OF SYSTEM TIME '2300-01-01'", 1, 49, "out of range", false},
	{"SHOW JOB 0", 1, 10, "job ID must be a positive integer", false},
	{"PAUSE JOB -5", 1, 11, "job ID must be a positive integer", false},
	{"RESUME JOB 9223372036854775808", 1, 12, "job ID must be a positive integer", false},
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range errorCases {
		stmt, err := Parse(tc.sql)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want an error", tc.sql, stmt)
			continue
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("Parse(%q) error %T is not *Error", tc.sql, err)
			continue
		}
		if e.Line != tc.line || e.Col != tc.col || !strings.Contains(e.Msg, tc.msg) {
			t.Errorf("Parse(%q):\n got %d:%d %q\nwant %d:%d containing %q\n%v", tc.sql, e.Line, e.Col, e.Msg, tc.line, tc.col, tc.msg, err)
		}
		if errors.Is(err, ErrSyntax) != tc.syntax || errors.Is(err, ErrInvalid) == tc.syntax {
			t.Errorf("Parse(%q): errors.Is(ErrSyntax) = %v, want %v", tc.sql, errors.Is(err, ErrSyntax), tc.syntax)
		}
		checkErrorInvariants(t, tc.sql, e)
	}
}

// checkErrorInvariants checks what must hold for every error: a position
// inside the input, consistent with Line and Col, and an Error() that
// shows the line with a caret.
func checkErrorInvariants(t *testing.T, sql string, e *Error) {
	t.Helper()
	if e.Pos < 0 || e.Pos > len(sql) || e.Line < 1 || e.Col < 1 || e.SQL != sql {
		t.Fatalf("Parse(%q): bad position %d (%d:%d) for input of %d bytes", sql, e.Pos, e.Line, e.Col, len(sql))
	}
	want := newError(sql, e.Pos, false, "")
	if want.Line != e.Line || want.Col != e.Col {
		t.Fatalf("Parse(%q): Line:Col %d:%d inconsistent with Pos %d", sql, e.Line, e.Col, e.Pos)
	}
	msg := e.Error()
	lines := strings.Split(msg, "\n")
	if len(lines) < 3 || !strings.HasSuffix(lines[len(lines)-1], "^") {
		t.Fatalf("Parse(%q): Error() has no caret line:\n%s", sql, msg)
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	_, err := Parse("BACKUP DATABASE movr, bank TO 'nodelocal://1/b'")
	want := "syntax error at line 1, column 28: expected \",\" or INTO, found \"TO\"\n" +
		"BACKUP DATABASE movr, bank TO 'nodelocal://1/b'\n" +
		"                           ^"
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || !reflect.DeepEqual(e.Expected, []string{`","`, "INTO"}) || e.Found != "TO" {
		t.Errorf("Expected/Found = %q/%q", e.Expected, e.Found)
	}

	_, err = Parse("BACKUP INTO 'nodelocal://1/b'\n\tWITH detached,\n\tdetached")
	want = "invalid statement at line 3, column 2: option detached given twice\n" +
		"\tdetached\n" +
		"\t^"
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestErrorsDoNotLeakSecrets(t *testing.T) {
	t.Parallel()
	for _, sql := range []string{
		"BACKUP INTO ('s3://b/a?AWS_SECRET_ACCESS_KEY=hunter2&COCKROACH_LOCALITY=default', 's3://b/b?AWS_SECRET_ACCESS_KEY=hunter2&COCKROACH_LOCALITY=default')",
		"BACKUP INTO 's3://b/a?AWS_SECRET_ACCESS_KEY=hunter2&COCKROACH_LOCALITY=x'",
		"BACKUP INTO ('b/a?AWS_SECRET_ACCESS_KEY=hunter2')",
	} {
		_, err := Parse(sql)
		if err == nil {
			t.Fatalf("Parse(%q) succeeded", sql)
		}
		if strings.Contains(err.(*Error).Msg, "hunter2") {
			t.Errorf("error message shows a secret: %s", err.(*Error).Msg)
		}
	}
}

func TestFormatRedactsUserinfo(t *testing.T) {
	t.Parallel()
	s, err := Parse("SHOW BACKUPS IN 'http://u:hunter2@host/b'")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "SHOW BACKUPS IN 'http://u:redacted@host/b'"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// hasSecrets reports whether String() of s would redact something, in
// which case it cannot round-trip.
func hasSecrets(s Statement) bool {
	var uris []string
	switch s := s.(type) {
	case *Backup:
		if s.Options.EncryptionPassphrase != "" {
			return true
		}
		uris = append(append(append(uris, s.URIs...), s.Options.KMS...), s.Options.IncrementalLocation...)
	case *Restore:
		if s.Options.EncryptionPassphrase != "" {
			return true
		}
		uris = append(append(append(uris, s.URIs...), s.Options.KMS...), s.Options.IncrementalLocation...)
	case *ShowBackups:
		uris = s.URIs
	case *ShowBackup:
		uris = s.URIs
	}
	for _, u := range uris {
		if redact.URI(u) != u {
			return true
		}
	}
	return false
}

func TestClusterTargets(t *testing.T) {
	t.Parallel()
	for sql, want := range map[string]bool{
		"BACKUP INTO 'nodelocal://1/b'":                      true,
		"BACKUP DATABASE a INTO 'nodelocal://1/b'":           false,
		"RESTORE FROM LATEST IN 'nodelocal://1/b'":           true,
		"RESTORE TABLE a.* FROM LATEST IN 'nodelocal://1/b'": false,
	} {
		s, err := Parse(sql)
		if err != nil {
			t.Fatal(err)
		}
		var got bool
		switch s := s.(type) {
		case *Backup:
			got = s.Targets.IsCluster()
		case *Restore:
			got = s.Targets.IsCluster()
		}
		if got != want {
			t.Errorf("%s: IsCluster = %v, want %v", sql, got, want)
		}
	}
}
