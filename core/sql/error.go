package sql

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Sentinels that classify an *Error with errors.Is.
var (
	// ErrSyntax matches an error in the statement's syntax: a bad token,
	// or a token where another was expected.
	ErrSyntax = errors.New("syntax error")
	// ErrInvalid matches a statement that is well formed but invalid: a
	// repeated or unknown option, a value of the wrong type, options that
	// cannot be combined, a malformed URI, timestamp or job id.
	ErrInvalid = errors.New("invalid statement")
)

// Error is a syntax or semantic error with the position of the offending
// token. Pos is a byte offset into SQL (len(SQL) for the end of input);
// Line and Col count from 1, Col in characters. For a syntax error at an
// unexpected token, Expected lists what would have been accepted and Found
// is the source text of the token found ("" at the end of input).
type Error struct {
	Pos       int
	Line, Col int
	Msg       string
	Expected  []string
	Found     string
	SQL       string

	semantic bool
}

// Is makes errors.Is(err, ErrSyntax) and errors.Is(err, ErrInvalid) work.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrSyntax:
		return !e.semantic
	case ErrInvalid:
		return e.semantic
	}
	return false
}

// Error reads like
//
//	syntax error at line 1, column 23: expected INTO, found "TO"
//	BACKUP DATABASE movr TO 'nodelocal://1/b'
//	                     ^
func (e *Error) Error() string {
	var b strings.Builder
	kind := "syntax error"
	if e.semantic {
		kind = "invalid statement"
	}
	fmt.Fprintf(&b, "%s at line %d, column %d: %s", kind, e.Line, e.Col, e.Msg)
	line, col := e.sourceLine()
	b.WriteByte('\n')
	b.WriteString(line)
	b.WriteByte('\n')
	// Keep tabs so the caret lines up under the column in a terminal.
	n := 0
	for _, r := range line {
		if n >= col-1 {
			break
		}
		if r == '\t' {
			b.WriteByte('\t')
		} else {
			b.WriteByte(' ')
		}
		n++
	}
	for ; n < col-1; n++ {
		b.WriteByte(' ')
	}
	b.WriteByte('^')
	return b.String()
}

// sourceLine returns the line of SQL holding Pos, without its line ending,
// and the column of Pos in it.
func (e *Error) sourceLine() (string, int) {
	pos := min(max(e.Pos, 0), len(e.SQL))
	start := strings.LastIndexByte(e.SQL[:pos], '\n') + 1
	end := strings.IndexByte(e.SQL[pos:], '\n')
	if end < 0 {
		end = len(e.SQL)
	} else {
		end += pos
	}
	line := strings.TrimSuffix(e.SQL[start:end], "\r")
	return line, e.Col
}

// newError builds an *Error at byte offset pos of sql.
func newError(sql string, pos int, semantic bool, msg string) *Error {
	pos = min(max(pos, 0), len(sql))
	line := 1 + strings.Count(sql[:pos], "\n")
	start := strings.LastIndexByte(sql[:pos], '\n') + 1
	col := 1 + utf8.RuneCountInString(sql[start:pos])
	return &Error{Pos: pos, Line: line, Col: col, Msg: msg, SQL: sql, semantic: semantic}
}

// joinAlternatives renders ["A", "B", "C"] as "A, B or C".
func joinAlternatives(alts []string) string {
	switch len(alts) {
	case 0:
		return ""
	case 1:
		return alts[0]
	}
	return strings.Join(alts[:len(alts)-1], ", ") + " or " + alts[len(alts)-1]
}
