package sql

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks, for any input: Parse never panics; every error is an
// *Error with a position inside the input; every statement's String()
// parses again, to a deeply equal statement when nothing was redacted, and
// String() is a fixed point. Run it with
//
//	go test -fuzz=FuzzParse ./core/sql
func FuzzParse(f *testing.F) {
	for _, tc := range validCases {
		f.Add(tc.sql)
	}
	for _, tc := range errorCases {
		f.Add(tc.sql)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		stmt, err := Parse(sql)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse(%q) error %T is not *Error: %v", sql, err, err)
			}
			if errors.Is(err, ErrSyntax) == errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error is not exactly one of ErrSyntax and ErrInvalid", sql)
			}
			checkErrorInvariants(t, sql, e)
			return
		}
		s := stmt.String()
		again, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", sql, s, err)
		}
		if s2 := again.String(); s2 != s {
			t.Fatalf("String() is not a fixed point for %q:\n%s\n%s", sql, s, s2)
		}
		if !hasSecrets(stmt) && !reflect.DeepEqual(again, stmt) {
			t.Fatalf("round trip of %q via %q\n got %#v\nwant %#v", sql, s, again, stmt)
		}
	})
}
