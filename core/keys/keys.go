// Package keys defines how the reference cluster lays out table data in its
// key space, and an order-preserving encoding for primary-key tuples.
//
// A table's rows live under its prefix, 'T' followed by the table id as four
// big-endian bytes; a row's key is the prefix followed by its encoded
// primary key. Restoring into new ids rewrites only the prefix.
package keys

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cairnbackup/cairn/core/spans"
)

const (
	tableMarker = 'T'
	tagString   = 0x12
	tagUint     = 0x2a
	escape      = 0x00
	escapedNull = 0xff
	terminator  = 0x01
)

// ErrBadKey is returned when a key does not decode.
var ErrBadKey = errors.New("malformed key")

// TablePrefixLen is the length of every table prefix.
const TablePrefixLen = 5

// TablePrefix returns the prefix of every key of table id.
func TablePrefix(id uint32) []byte {
	b := make([]byte, TablePrefixLen)
	b[0] = tableMarker
	binary.BigEndian.PutUint32(b[1:], id)
	return b
}

// TableSpan returns the span holding all of table id's rows.
func TableSpan(id uint32) spans.Span {
	p := TablePrefix(id)
	return spans.Span{Key: p, EndKey: spans.PrefixEnd(p)}
}

// DecodeTableID splits a key into its table id and the rest.
func DecodeTableID(key []byte) (uint32, []byte, error) {
	if len(key) < TablePrefixLen || key[0] != tableMarker {
		return 0, nil, fmt.Errorf("decoding table id of %q: %w", key, ErrBadKey)
	}
	return binary.BigEndian.Uint32(key[1:TablePrefixLen]), key[TablePrefixLen:], nil
}

// RewriteTableID returns key with its table prefix replaced by newID's,
// appended to dst.
func RewriteTableID(dst, key []byte, newID uint32) ([]byte, error) {
	_, rest, err := DecodeTableID(key)
	if err != nil {
		return nil, err
	}
	dst = append(dst, TablePrefix(newID)...)
	return append(dst, rest...), nil
}

// AppendString appends an order-preserving encoding of s.
func AppendString(b []byte, s string) []byte {
	b = append(b, tagString)
	for i := 0; i < len(s); i++ {
		if s[i] == escape {
			b = append(b, escape, escapedNull)
			continue
		}
		b = append(b, s[i])
	}
	return append(b, escape, terminator)
}

// AppendUint appends an order-preserving encoding of v.
func AppendUint(b []byte, v uint64) []byte {
	b = append(b, tagUint)
	return binary.BigEndian.AppendUint64(b, v)
}

// DecodeTuple decodes a sequence of encoded strings and uints; strings come
// back as string, uints as uint64.
func DecodeTuple(b []byte) ([]any, error) {
	var out []any
	for len(b) > 0 {
		switch b[0] {
		case tagString:
			var s []byte
			i := 1
			for ; ; i++ {
				if i+1 >= len(b) {
					return nil, fmt.Errorf("decoding string: %w", ErrBadKey)
				}
				if b[i] != escape {
					s = append(s, b[i])
					continue
				}
				if b[i+1] == escapedNull {
					s = append(s, 0)
					i++
					continue
				}
				if b[i+1] == terminator {
					break
				}
				return nil, fmt.Errorf("decoding string: %w", ErrBadKey)
			}
			out = append(out, string(s))
			b = b[i+2:]
		case tagUint:
			if len(b) < 9 {
				return nil, fmt.Errorf("decoding uint: %w", ErrBadKey)
			}
			out = append(out, binary.BigEndian.Uint64(b[1:9]))
			b = b[9:]
		default:
			return nil, fmt.Errorf("decoding tuple: unknown tag %#x: %w", b[0], ErrBadKey)
		}
	}
	return out, nil
}

// Pretty renders a key for people: /Table/53/"new york"/42. Keys that do
// not decode are shown quoted.
func Pretty(key []byte) string {
	id, rest, err := DecodeTableID(key)
	if err != nil {
		if len(key) == 0 {
			return "/Min"
		}
		if bytes.Equal(key, []byte{0xff}) {
			return "/Max"
		}
		return strconv.Quote(string(key))
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "/Table/%d", id)
	if len(rest) == 0 {
		return sb.String()
	}
	vals, err := DecodeTuple(rest)
	if err != nil {
		fmt.Fprintf(&sb, "/%q", rest)
		return sb.String()
	}
	for _, v := range vals {
		switch v := v.(type) {
		case string:
			fmt.Fprintf(&sb, "/%q", v)
		default:
			fmt.Fprintf(&sb, "/%v", v)
		}
	}
	return sb.String()
}

// PrettySpan renders a span for people.
func PrettySpan(s spans.Span) string {
	return Pretty(s.Key) + "-" + Pretty(s.EndKey)
}
