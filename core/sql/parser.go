package sql

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/redact"
)

// reserved words cannot be plain identifiers; Format double-quotes names
// that spell one.
var reserved = map[string]bool{
	"backup": true, "backups": true, "restore": true, "show": true, "pause": true,
	"resume": true, "cancel": true, "database": true, "table": true, "into": true,
	"from": true, "in": true, "latest": true, "as": true, "of": true, "system": true,
	"time": true, "with": true, "options": true, "job": true, "jobs": true,
	"when": true, "complete": true,
}

// LocalityParam is the query parameter that tags each URI of a
// locality-aware destination with the locality it serves, "k=v", or
// "default".
const LocalityParam = "COCKROACH_LOCALITY"

// DefaultLocality is the LocalityParam value of the default URI.
const DefaultLocality = "default"

// Parse parses one statement, optionally followed by a semicolon. Keywords
// are case-insensitive; plain identifiers are folded to lower case and
// double-quoted ones kept as written. Every error is an *Error, matching
// ErrSyntax or ErrInvalid.
func Parse(sql string) (stmt Statement, err error) {
	toks, lerr := lex(sql)
	if lerr != nil {
		return nil, lerr
	}
	p := &parser{sql: sql, toks: toks}
	defer func() {
		if r := recover(); r != nil {
			b, ok := r.(bailout)
			if !ok {
				panic(r)
			}
			stmt, err = nil, b.err
		}
	}()
	return p.parseStatement(), nil
}

// bailout carries an *Error out of the recursive descent.
type bailout struct{ err *Error }

type parser struct {
	sql  string
	toks []token
	i    int
	// expected collects what the parser tested for at the current token,
	// for the "expected ..." part of a syntax error there.
	expected []string
}

func (p *parser) tok() token { return p.toks[p.i] }

func (p *parser) peekAt(n int) token {
	if p.i+n >= len(p.toks) {
		return p.toks[len(p.toks)-1]
	}
	return p.toks[p.i+n]
}

func (p *parser) advance() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	p.expected = p.expected[:0]
	return t
}

func (p *parser) want(what string) {
	if !slices.Contains(p.expected, what) {
		p.expected = append(p.expected, what)
	}
}

// isKw reports whether the current token is the keyword kw (upper case).
func (p *parser) isKw(kw string) bool {
	p.want(kw)
	t := p.tok()
	return t.kind == tIdent && strings.EqualFold(t.text, kw)
}

func (p *parser) acceptKw(kw string) bool {
	if p.isKw(kw) {
		p.advance()
		return true
	}
	return false
}

func (p *parser) expectKw(kw string) token {
	if !p.isKw(kw) {
		p.syntaxError()
	}
	return p.advance()
}

func (p *parser) isPunct(c string) bool {
	p.want(strconv.Quote(c))
	t := p.tok()
	return t.kind == tPunct && t.text == c
}

func (p *parser) acceptPunct(c string) bool {
	if p.isPunct(c) {
		p.advance()
		return true
	}
	return false
}

func (p *parser) expectPunct(c string) token {
	if !p.isPunct(c) {
		p.syntaxError()
	}
	return p.advance()
}

func (p *parser) expectString(what string) token {
	p.want(what)
	if p.tok().kind != tString {
		p.syntaxError()
	}
	return p.advance()
}

// syntaxError aborts with "expected <what was tested>, found <token>".
func (p *parser) syntaxError() {
	t := p.tok()
	found := "end of input"
	if t.kind != tEOF {
		text := t.text
		if len(text) > 40 {
			text = text[:37] + "..."
		}
		found = strconv.Quote(text)
	}
	e := newError(p.sql, t.pos, false, fmt.Sprintf("expected %s, found %s", joinAlternatives(p.expected), found))
	e.Expected = slices.Clone(p.expected)
	if t.kind != tEOF {
		e.Found = t.text
	}
	panic(bailout{e})
}

// invalid aborts with a semantic error at t.
func (p *parser) invalid(t token, format string, args ...any) {
	panic(bailout{newError(p.sql, t.pos, true, fmt.Sprintf(format, args...))})
}

func (p *parser) parseStatement() Statement {
	var s Statement
	switch {
	case p.acceptKw("BACKUP"):
		s = p.parseBackup()
	case p.acceptKw("RESTORE"):
		s = p.parseRestore()
	case p.acceptKw("SHOW"):
		s = p.parseShow()
	case p.acceptKw("PAUSE"):
		s = &ControlJob{Op: JobPause, ID: p.parseJobKwID()}
	case p.acceptKw("RESUME"):
		s = &ControlJob{Op: JobResume, ID: p.parseJobKwID()}
	case p.acceptKw("CANCEL"):
		s = &ControlJob{Op: JobCancel, ID: p.parseJobKwID()}
	default:
		p.syntaxError()
	}
	p.acceptPunct(";")
	p.want("end of input")
	if p.tok().kind != tEOF {
		p.syntaxError()
	}
	return s
}

func (p *parser) parseJobKwID() int64 {
	p.expectKw("JOB")
	return p.parseJobID()
}

func (p *parser) parseJobID() int64 {
	p.want("job ID")
	t := p.tok()
	switch {
	case t.kind == tPunct && t.text == "-":
		p.invalid(t, "job ID must be a positive integer")
	case t.kind != tNumber:
		p.syntaxError()
	}
	id, err := strconv.ParseInt(t.val, 10, 64)
	if err != nil || id <= 0 {
		p.invalid(t, "job ID must be a positive integer, not %s", t.text)
	}
	p.advance()
	return id
}

func (p *parser) parseShow() Statement {
	switch {
	case p.acceptKw("BACKUPS"):
		p.expectKw("IN")
		uris, _ := p.parseURIs("collection")
		return &ShowBackups{URIs: uris}
	case p.acceptKw("BACKUP"):
		s := &ShowBackup{}
		p.acceptKw("FROM")
		s.Latest, s.Subdir = p.parseLatestOrSubdir(true)
		s.URIs, _ = p.parseURIs("collection")
		opts := p.parseOptions("SHOW BACKUP", showBackupOptions)
		s.CheckFiles = opts.bool("check_files")
		return s
	case p.acceptKw("JOBS"):
		return &ShowJobs{}
	case p.acceptKw("JOB"):
		s := &ShowJob{}
		if p.acceptKw("WHEN") {
			p.expectKw("COMPLETE")
			s.WhenComplete = true
		}
		s.ID = p.parseJobID()
		if !s.WhenComplete && p.acceptKw("WHEN") {
			p.expectKw("COMPLETE")
			s.WhenComplete = true
		}
		return s
	}
	p.syntaxError()
	return nil
}

// parseLatestOrSubdir parses "LATEST IN" or "'<subdir>' IN". Unless
// required, it also accepts neither and returns false, "".
func (p *parser) parseLatestOrSubdir(required bool) (bool, string) {
	if p.acceptKw("LATEST") {
		p.expectKw("IN")
		return true, ""
	}
	if required {
		t := p.expectString("string literal")
		p.expectKw("IN")
		if t.val == "" {
			p.invalid(t, "empty subdirectory")
		}
		return false, t.val
	}
	p.want("string literal")
	if t := p.tok(); t.kind == tString {
		if next := p.peekAt(1); next.kind == tIdent && next.val == "in" {
			if t.val == "" {
				p.invalid(t, "empty subdirectory")
			}
			p.advance()
			p.advance()
			return false, t.val
		}
	}
	return false, ""
}

func (p *parser) parseBackup() *Backup {
	s := &Backup{}
	s.Targets = p.parseTargets()
	p.expectKw("INTO")
	s.Latest, s.Subdir = p.parseLatestOrSubdir(false)
	s.URIs, _ = p.parseURIs("collection")
	s.AsOf = p.parseAsOf()
	opts := p.parseOptions("BACKUP", backupOptions)
	s.Options = BackupOptions{
		RevisionHistory:      opts.bool("revision_history"),
		Detached:             opts.bool("detached"),
		EncryptionPassphrase: opts.str("encryption_passphrase"),
		KMS:                  opts.list("kms"),
		ExecutionLocality:    opts.str("execution locality"),
		IncrementalLocation:  opts.list("incremental_location"),
	}
	p.checkEncryption(opts)
	return s
}

func (p *parser) parseRestore() *Restore {
	s := &Restore{}
	s.Targets = p.parseTargets()
	p.expectKw("FROM")
	s.Latest, s.Subdir = p.parseLatestOrSubdir(true)
	s.URIs, _ = p.parseURIs("collection")
	s.AsOf = p.parseAsOf()
	opts := p.parseOptions("RESTORE", restoreOptions)
	s.Options = RestoreOptions{
		NewDBName:             opts.str("new_db_name"),
		IntoDB:                opts.str("into_db"),
		Detached:              opts.bool("detached"),
		EncryptionPassphrase:  opts.str("encryption_passphrase"),
		KMS:                   opts.list("kms"),
		ExecutionLocality:     opts.str("execution locality"),
		SchemaOnly:            opts.bool("schema_only"),
		VerifyBackupTableData: opts.bool("verify_backup_table_data"),
		IncrementalLocation:   opts.list("incremental_location"),
	}
	p.checkEncryption(opts)
	if o, ok := opts["new_db_name"]; ok {
		if _, ok := opts["into_db"]; ok {
			p.invalid(opts.later("new_db_name", "into_db"), "new_db_name cannot be combined with into_db")
		}
		if len(s.Targets.Databases) != 1 {
			p.invalid(o.name, "new_db_name can only be used when restoring a single DATABASE")
		}
	}
	if o, ok := opts["into_db"]; ok && len(s.Targets.Tables) == 0 {
		p.invalid(o.name, "into_db can only be used when restoring TABLE targets")
	}
	return s
}

func (p *parser) checkEncryption(opts options) {
	_, pass := opts["encryption_passphrase"]
	_, kms := opts["kms"]
	if pass && kms {
		p.invalid(opts.later("encryption_passphrase", "kms"), "encryption_passphrase cannot be combined with kms")
	}
}

// parseTargets parses an optional DATABASE or TABLE list.
func (p *parser) parseTargets() Targets {
	var t Targets
	switch {
	case p.acceptKw("DATABASE"):
		for {
			tok := p.tok()
			name := p.parseName("database name")
			if slices.Contains(t.Databases, name) {
				p.invalid(tok, "database %s listed twice", quoteIdent(name))
			}
			t.Databases = append(t.Databases, name)
			if !p.acceptPunct(",") {
				return t
			}
		}
	case p.acceptKw("TABLE"):
		for {
			tok := p.tok()
			db := p.parseName("table name")
			if !p.isPunct(".") {
				p.invalid(tok, "table name %s must be qualified with its database (db.table or db.*)", quoteIdent(db))
			}
			p.advance()
			var name string
			if p.isPunct("*") {
				p.advance()
				name = "*"
			} else {
				name = p.parseName("table name")
			}
			tn := TableName{Database: db, Table: name}
			if slices.Contains(t.Tables, tn) {
				p.invalid(tok, "table %s listed twice", formatTableName(tn))
			}
			t.Tables = append(t.Tables, tn)
			if !p.acceptPunct(",") {
				return t
			}
		}
	}
	return t
}

// parseName parses an identifier; what names it in a syntax error.
func (p *parser) parseName(what string) string {
	p.want(what)
	t := p.tok()
	switch {
	case t.kind == tIdent && !reserved[t.val]:
	case t.kind == tQuotedIdent:
		if t.val == "" {
			p.invalid(t, "empty identifier")
		}
	default:
		p.syntaxError()
	}
	p.advance()
	return t.val
}

// parseURIs parses 'uri' or ('uri', ...) and validates it as a destination
// (what names it in errors); it returns the URIs and their tokens.
func (p *parser) parseURIs(what string) ([]string, []token) {
	uris, toks := p.parseStringList()
	for i, u := range uris {
		p.checkURI(toks[i], u)
	}
	p.checkLocalities(what, uris, toks)
	return uris, toks
}

// parseStringList parses 'a' or ('a', 'b', ...).
func (p *parser) parseStringList() ([]string, []token) {
	var vals []string
	var toks []token
	if p.acceptPunct("(") {
		for {
			t := p.expectString("string literal")
			vals, toks = append(vals, t.val), append(toks, t)
			if !p.acceptPunct(",") {
				break
			}
		}
		p.expectPunct(")")
		return vals, toks
	}
	t := p.expectString("string literal")
	return []string{t.val}, []token{t}
}

// checkURI requires an absolute URI with a scheme and a well-formed query.
// Messages show the URI redacted.
func (p *parser) checkURI(t token, u string) {
	parsed, err := url.Parse(u)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		p.invalid(t, "invalid URI: %v", err)
	}
	if parsed.Scheme == "" {
		p.invalid(t, "URI %s has no scheme (want e.g. 'nodelocal://1/backups' or 's3://bucket/path')", quoteString(redact.URI(u)))
	}
	if _, err := url.ParseQuery(parsed.RawQuery); err != nil {
		p.invalid(t, "invalid query in URI %s: %v", quoteString(redact.URI(u)), err)
	}
}

// locality returns the COCKROACH_LOCALITY value of u ("" when absent),
// rejecting a repeated or malformed one. u has passed checkURI.
func (p *parser) locality(t token, u string) string {
	parsed, _ := url.Parse(u)
	q, _ := url.ParseQuery(parsed.RawQuery)
	vals := q[LocalityParam]
	switch {
	case len(vals) == 0:
		return ""
	case len(vals) > 1:
		p.invalid(t, "%s given more than once in URI %s", LocalityParam, quoteString(redact.URI(u)))
	}
	v := vals[0]
	if v == DefaultLocality {
		return v
	}
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" || val == "" || strings.ContainsAny(v, ",") || strings.Contains(val, "=") {
		p.invalid(t, "%s=%s in URI %s: want %s or one tier key=value", LocalityParam, v, quoteString(redact.URI(u)), DefaultLocality)
	}
	return v
}

// checkLocalities applies the rules for locality-aware URIs: a single URI
// is untagged or default; several are each tagged, exactly one default,
// no locality twice.
func (p *parser) checkLocalities(what string, uris []string, toks []token) {
	if len(uris) == 1 {
		if loc := p.locality(toks[0], uris[0]); loc != "" && loc != DefaultLocality {
			p.invalid(toks[0], "a single %s URI must have %s=%s or none, not %s", what, LocalityParam, DefaultLocality, loc)
		}
		return
	}
	seen := map[string]bool{}
	for i, u := range uris {
		loc := p.locality(toks[i], u)
		switch {
		case loc == "":
			p.invalid(toks[i], "locality-aware %s URI %s has no %s parameter", what, quoteString(redact.URI(u)), LocalityParam)
		case loc == DefaultLocality && seen[loc]:
			p.invalid(toks[i], "a second default URI: %s", quoteString(redact.URI(u)))
		case seen[loc]:
			p.invalid(toks[i], "locality %s given twice: %s", loc, quoteString(redact.URI(u)))
		}
		seen[loc] = true
	}
	if !seen[DefaultLocality] {
		p.invalid(toks[0], "locality-aware %s URIs need one with %s=%s", what, LocalityParam, DefaultLocality)
	}
}

func (p *parser) parseAsOf() *AsOf {
	if !p.acceptKw("AS") {
		return nil
	}
	p.expectKw("OF")
	p.expectKw("SYSTEM")
	p.expectKw("TIME")
	t := p.expectString("string literal")
	v := strings.TrimSpace(t.val)
	if d, err := time.ParseDuration(v); err == nil {
		if d >= 0 {
			p.invalid(t, "AS OF SYSTEM TIME interval %s must be negative (e.g. '-10s')", quoteString(t.val))
		}
		return &AsOf{Offset: d, Relative: true}
	}
	ts, err := hlc.Parse(v)
	if err != nil {
		p.invalid(t, "AS OF SYSTEM TIME %s: want a negative interval such as '-10s', nanoseconds[.logical] or an RFC 3339 time", quoteString(t.val))
	}
	// hlc.Parse does not catch times past 2262 overflowing int64 nanos.
	if ts.WallTime <= 0 || (len(v) > 4 && v[4] == '-' && v[:4] >= "2262") {
		p.invalid(t, "AS OF SYSTEM TIME %s is out of range: want a time after the Unix epoch and before 2262", quoteString(t.val))
	}
	return &AsOf{Timestamp: ts}
}
