// Package spans is the algebra of key spans: [Key, EndKey) intervals of
// byte-string keys. It does no I/O.
package spans

import (
	"bytes"
	"fmt"
)

// Span is the half-open key interval [Key, EndKey). An empty EndKey means
// the single key Key.
type Span struct {
	Key    []byte `json:"key"`
	EndKey []byte `json:"end_key"`
}

// Valid reports whether s is non-empty and well ordered.
func (s Span) Valid() bool { return len(s.EndKey) == 0 || bytes.Compare(s.Key, s.EndKey) < 0 }

// Contains reports whether key lies in s.
func (s Span) ContainsKey(key []byte) bool {
	if len(s.EndKey) == 0 {
		return bytes.Equal(s.Key, key)
	}
	return bytes.Compare(s.Key, key) <= 0 && bytes.Compare(key, s.EndKey) < 0
}

// Overlaps reports whether s and o share a key. Both must have EndKeys.
func (s Span) Overlaps(o Span) bool {
	return bytes.Compare(s.Key, o.EndKey) < 0 && bytes.Compare(o.Key, s.EndKey) < 0
}

// Intersect returns the common part of s and o, and whether there is one.
func (s Span) Intersect(o Span) (Span, bool) {
	if !s.Overlaps(o) {
		return Span{}, false
	}
	r := s
	if bytes.Compare(o.Key, r.Key) > 0 {
		r.Key = o.Key
	}
	if bytes.Compare(o.EndKey, r.EndKey) < 0 {
		r.EndKey = o.EndKey
	}
	return r, true
}

// Equal reports whether s and o are the same span.
func (s Span) Equal(o Span) bool {
	return bytes.Equal(s.Key, o.Key) && bytes.Equal(s.EndKey, o.EndKey)
}

func (s Span) String() string { return fmt.Sprintf("[%q, %q)", s.Key, s.EndKey) }

// PrefixEnd returns the first key greater than every key that starts with
// prefix, or nil when there is none (prefix is all 0xff).
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
