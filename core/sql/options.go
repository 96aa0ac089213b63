package sql

import (
	"maps"
	"slices"
	"strings"
)

type optKind int

const (
	optBool   optKind = iota // bare, or = TRUE | FALSE
	optString                // = 'string'
	optURIs                  // = 'uri' | ('uri', ...)
	optDest                  // like optURIs, checked as a locality-aware destination
)

var backupOptions = map[string]optKind{
	"revision_history":      optBool,
	"detached":              optBool,
	"encryption_passphrase": optString,
	"kms":                   optURIs,
	"execution locality":    optString,
	"incremental_location":  optDest,
}

var restoreOptions = map[string]optKind{
	"new_db_name":              optString,
	"into_db":                  optString,
	"detached":                 optBool,
	"encryption_passphrase":    optString,
	"kms":                      optURIs,
	"execution locality":       optString,
	"schema_only":              optBool,
	"verify_backup_table_data": optBool,
	"incremental_location":     optDest,
}

var showBackupOptions = map[string]optKind{
	"check_files": optBool,
}

// optValue is one parsed option; name is the token that named it, where
// errors about the option point.
type optValue struct {
	name token
	b    bool
	s    string
	list []string
}

type options map[string]optValue

func (o options) bool(name string) bool     { return o[name].b }
func (o options) str(name string) string    { return o[name].s }
func (o options) list(name string) []string { return o[name].list }

// later returns the name token of whichever of a and b came second.
func (o options) later(a, b string) token {
	if o[a].name.pos > o[b].name.pos {
		return o[a].name
	}
	return o[b].name
}

// parseOptions parses an optional WITH clause, "WITH opt, ..." or
// "WITH OPTIONS (opt, ...)", against the options valid for stmt.
func (p *parser) parseOptions(stmt string, valid map[string]optKind) options {
	opts := options{}
	if !p.acceptKw("WITH") {
		return opts
	}
	paren := false
	if p.acceptKw("OPTIONS") {
		p.expectPunct("(")
		paren = true
	}
	for {
		p.parseOption(stmt, valid, opts)
		if !p.acceptPunct(",") {
			break
		}
	}
	if paren {
		p.expectPunct(")")
	}
	return opts
}

func (p *parser) parseOption(stmt string, valid map[string]optKind, opts options) {
	p.want("option name")
	nameTok := p.tok()
	if nameTok.kind != tIdent {
		p.syntaxError()
	}
	p.advance()
	name := nameTok.val
	if name == "execution" {
		p.expectKw("LOCALITY")
		name = "execution locality"
	}
	kind, ok := valid[name]
	if !ok {
		names := slices.Sorted(maps.Keys(valid))
		p.invalid(nameTok, "unknown %s option %q; valid options: %s", stmt, name, strings.Join(names, ", "))
	}
	if _, dup := opts[name]; dup {
		p.invalid(nameTok, "option %s given twice", name)
	}
	v := optValue{name: nameTok}
	switch kind {
	case optBool:
		v.b = true
		if p.acceptPunct("=") {
			t := p.optValueToken(name, "TRUE", "FALSE")
			switch {
			case t.kind == tIdent && t.val == "true":
			case t.kind == tIdent && t.val == "false":
				v.b = false
			default:
				p.invalid(t, "option %s takes a boolean (TRUE or FALSE), not %s", name, t.text)
			}
		}
	case optString:
		p.expectPunct("=")
		t := p.optValueToken(name, "string literal")
		if t.kind != tString {
			p.invalid(t, "option %s takes a string literal, not %s", name, t.text)
		}
		v.s = t.val
		p.checkStringOption(t, name, v.s)
	case optURIs, optDest:
		p.expectPunct("=")
		p.want("string literal")
		p.want(`"("`)
		if t := p.tok(); t.kind != tString && !(t.kind == tPunct && t.text == "(") && isValueToken(t) {
			p.invalid(t, "option %s takes a URI or a parenthesized list of URIs, not %s", name, t.text)
		}
		if kind == optDest {
			v.list, _ = p.parseURIs(name)
		} else {
			var toks []token
			v.list, toks = p.parseStringList()
			for i, u := range v.list {
				p.checkURI(toks[i], u)
			}
		}
	}
	opts[name] = v
}

// isValueToken reports whether t could have been meant as an option
// value, so that a wrong one is a type error rather than a syntax error.
func isValueToken(t token) bool {
	switch t.kind {
	case tIdent, tQuotedIdent, tString, tNumber:
		return true
	case tPunct:
		return t.text == "-" || t.text == "*"
	}
	return false
}

// optValueToken consumes and returns the value token of an option, or
// fails with a syntax error when there is none.
func (p *parser) optValueToken(name string, expected ...string) token {
	for _, e := range expected {
		p.want(e)
	}
	t := p.tok()
	if !isValueToken(t) {
		p.syntaxError()
	}
	p.advance()
	return t
}

func (p *parser) checkStringOption(t token, name, v string) {
	switch name {
	case "new_db_name", "into_db":
		if v == "" {
			p.invalid(t, "option %s: empty identifier", name)
		}
	case "encryption_passphrase":
		if v == "" {
			p.invalid(t, "option encryption_passphrase must not be empty")
		}
	case "execution locality":
		if !validLocalityFilter(v) {
			p.invalid(t, "invalid execution locality %s: want tiers key=value separated by commas, e.g. 'region=us-east1,zone=a'", quoteString(v))
		}
	}
}

// validLocalityFilter reports whether v is one or more tiers "k=v" joined
// by commas, each key and value non-empty.
func validLocalityFilter(v string) bool {
	for tier := range strings.SplitSeq(v, ",") {
		k, val, ok := strings.Cut(tier, "=")
		if !ok || strings.TrimSpace(k) == "" || strings.TrimSpace(val) == "" || strings.Contains(val, "=") {
			return false
		}
	}
	return true
}
