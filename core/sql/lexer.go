package sql

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

type tokenKind int

const (
	tEOF         tokenKind = iota
	tIdent                 // plain identifier or keyword; val is lower-cased
	tQuotedIdent           // "double quoted"; val has "" unescaped
	tString                // 'single quoted'; val has '' unescaped
	tNumber                // decimal digits
	tPunct                 // one of ( ) , . = * ; -
)

type token struct {
	kind tokenKind
	pos  int    // byte offset of the first byte
	text string // source text
	val  string
}

// lex splits sql into tokens, ending with a tEOF token at len(sql). Spaces,
// -- line comments and /* block comments */ separate tokens.
func lex(sql string) ([]token, *Error) {
	var toks []token
	i := 0
	for {
		// Skip blanks and comments.
		for i < len(sql) {
			c := sql[i]
			switch {
			case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
				i++
				continue
			case strings.HasPrefix(sql[i:], "--"):
				if j := strings.IndexByte(sql[i:], '\n'); j >= 0 {
					i += j + 1
				} else {
					i = len(sql)
				}
				continue
			case strings.HasPrefix(sql[i:], "/*"):
				j := strings.Index(sql[i+2:], "*/")
				if j < 0 {
					return nil, newError(sql, i, false, "unterminated comment")
				}
				i += 2 + j + 2
				continue
			}
			break
		}
		if i >= len(sql) {
			return append(toks, token{kind: tEOF, pos: len(sql)}), nil
		}
		start := i
		c := sql[i]
		switch {
		case c == '\'' || c == '"':
			val, end, ok := lexQuoted(sql, i, c)
			if !ok {
				what := "string literal"
				if c == '"' {
					what = "quoted identifier"
				}
				return nil, newError(sql, start, false, "unterminated "+what)
			}
			kind := tString
			if c == '"' {
				kind = tQuotedIdent
			}
			toks = append(toks, token{kind: kind, pos: start, text: sql[start:end], val: val})
			i = end
		case c >= '0' && c <= '9':
			for i < len(sql) && sql[i] >= '0' && sql[i] <= '9' {
				i++
			}
			toks = append(toks, token{kind: tNumber, pos: start, text: sql[start:i], val: sql[start:i]})
		case strings.IndexByte("(),.=*;-", c) >= 0:
			i++
			toks = append(toks, token{kind: tPunct, pos: start, text: sql[start:i], val: sql[start:i]})
		default:
			r, size := utf8.DecodeRuneInString(sql[i:])
			if r == utf8.RuneError && size <= 1 {
				return nil, newError(sql, start, false, fmt.Sprintf("invalid UTF-8 byte 0x%02x", c))
			}
			if !isIdentStart(r) {
				return nil, newError(sql, start, false, fmt.Sprintf("unexpected character %q", r))
			}
			i += size
			for i < len(sql) {
				r, size := utf8.DecodeRuneInString(sql[i:])
				if r == utf8.RuneError && size <= 1 || !isIdentPart(r) {
					break
				}
				i += size
			}
			text := sql[start:i]
			toks = append(toks, token{kind: tIdent, pos: start, text: text, val: strings.ToLower(text)})
		}
	}
}

// lexQuoted reads a literal quoted with q starting at sql[i], where a
// doubled q stands for one. It returns the unescaped value and the offset
// just past the closing quote.
func lexQuoted(sql string, i int, q byte) (string, int, bool) {
	var b strings.Builder
	j := i + 1
	for {
		k := strings.IndexByte(sql[j:], q)
		if k < 0 {
			return "", 0, false
		}
		b.WriteString(sql[j : j+k])
		j += k + 1
		if j < len(sql) && sql[j] == q {
			b.WriteByte(q)
			j++
			continue
		}
		return b.String(), j, true
	}
}

func isIdentStart(r rune) bool { return r == '_' || unicode.IsLetter(r) }

func isIdentPart(r rune) bool { return isIdentStart(r) || r == '$' || unicode.IsDigit(r) }
