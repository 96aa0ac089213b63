// Package fingerprint computes order-independent fingerprints of key spans,
// so a test or an operator can prove that a restored table holds exactly the
// rows of its source.
//
// A fingerprint is the sum, modulo 2^128, of a SHA-256-derived hash of every
// visible (key, value) pair. Summing (rather than XOR-ing) keeps duplicate
// entries from cancelling, and makes the result independent of the order in
// which a scan visits keys, so a span read range by range in any order
// fingerprints the same as one read in key order. Stripping the table prefix
// from each key makes a table restored under a new id fingerprint equal to
// its source.
package fingerprint

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"maps"
	"math/bits"
	"slices"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/core/spans"
)

// Scanner reads the versions of keys visible at a timestamp.
//
// Scan calls fn for every key in span that has a live (non-deleted) version
// at or below ts, with the value of its newest such version. Keys may come in
// any order, but each key at most once. fn must not retain key or value after
// it returns; an error from fn stops the scan and is returned by Scan.
type Scanner interface {
	Scan(ctx context.Context, span spans.Span, ts hlc.Timestamp, fn func(key, value []byte) error) error
}

// Fingerprint summarises a set of rows. Two fingerprints are equal (==) when
// the sets of rows are equal, up to hash collisions of a 128-bit sum.
type Fingerprint struct {
	// Sum is the 128-bit sum, most significant word first.
	Sum [2]uint64 `json:"sum"`
	// Rows is how many entries were summed.
	Rows int64 `json:"rows"`
	// Bytes is the total length of the (stripped) keys and the values.
	Bytes int64 `json:"bytes"`
}

// Hex returns the full sum as 32 hexadecimal digits.
func (f Fingerprint) Hex() string { return fmt.Sprintf("%016x%016x", f.Sum[0], f.Sum[1]) }

// String returns an abbreviated form for people, such as
// "3fa9c27e01b44d1c…(rows=1234)".
func (f Fingerprint) String() string {
	return fmt.Sprintf("%s…(rows=%d)", f.Hex()[:16], f.Rows)
}

// add folds a 32-byte digest into f's sum.
func (f *Fingerprint) add(digest []byte) {
	hi := binary.BigEndian.Uint64(digest[0:8])
	lo := binary.BigEndian.Uint64(digest[8:16])
	var carry uint64
	f.Sum[1], carry = bits.Add64(f.Sum[1], lo, 0)
	f.Sum[0], _ = bits.Add64(f.Sum[0], hi, carry)
}

// entryHasher hashes one (key, value) entry; the key is length-prefixed so
// that moving a byte between key and value changes the hash.
type entryHasher struct {
	h      hash.Hash
	lenBuf [binary.MaxVarintLen64]byte
	digest [sha256.Size]byte
}

func newEntryHasher() *entryHasher { return &entryHasher{h: sha256.New()} }

func (e *entryHasher) sum(key, value []byte) []byte {
	e.h.Reset()
	n := binary.PutUvarint(e.lenBuf[:], uint64(len(key)))
	e.h.Write(e.lenBuf[:n])
	e.h.Write(key)
	e.h.Write(value)
	return e.h.Sum(e.digest[:0])
}

// Span fingerprints every key of span visible at ts, hashing each key with
// its first stripPrefix bytes removed. It returns an error if the scan fails
// or if a key is shorter than stripPrefix.
func Span(ctx context.Context, s Scanner, span spans.Span, ts hlc.Timestamp, stripPrefix int) (Fingerprint, error) {
	if stripPrefix < 0 {
		return Fingerprint{}, fmt.Errorf("fingerprinting span %s: negative prefix length %d", keys.PrettySpan(span), stripPrefix)
	}
	var f Fingerprint
	eh := newEntryHasher()
	err := s.Scan(ctx, span, ts, func(key, value []byte) error {
		if len(key) < stripPrefix {
			return fmt.Errorf("key %s is shorter than the %d-byte prefix to strip", keys.Pretty(key), stripPrefix)
		}
		k := key[stripPrefix:]
		f.add(eh.sum(k, value))
		f.Rows++
		f.Bytes += int64(len(k) + len(value))
		return nil
	})
	if err != nil {
		return Fingerprint{}, fmt.Errorf("fingerprinting span %s at %s: %w", keys.PrettySpan(span), ts, err)
	}
	return f, nil
}

// Table fingerprints table tableID's rows visible at ts, with the table
// prefix stripped from every key: the same rows under two table ids give
// equal fingerprints.
func Table(ctx context.Context, s Scanner, tableID uint32, ts hlc.Timestamp) (Fingerprint, error) {
	return Span(ctx, s, keys.TableSpan(tableID), ts, keys.TablePrefixLen)
}

// Combine folds per-table fingerprints, keyed by table name, into one for a
// whole database. Each table's name is hashed together with its fingerprint,
// so renaming or swapping two tables' contents changes the result, and so
// does adding an empty table. Rows and Bytes are the totals.
func Combine(named map[string]Fingerprint) Fingerprint {
	var out Fingerprint
	h := sha256.New()
	var digest [sha256.Size]byte
	var buf []byte
	// The sum is order-independent; iterate in sorted order anyway so the
	// hashing work is reproducible under a debugger.
	for _, name := range slices.Sorted(maps.Keys(named)) {
		f := named[name]
		buf = buf[:0]
		buf = append(buf, "cairn.fingerprint.table\x00"...)
		buf = binary.AppendUvarint(buf, uint64(len(name)))
		buf = append(buf, name...)
		buf = binary.BigEndian.AppendUint64(buf, f.Sum[0])
		buf = binary.BigEndian.AppendUint64(buf, f.Sum[1])
		buf = binary.BigEndian.AppendUint64(buf, uint64(f.Rows))
		buf = binary.BigEndian.AppendUint64(buf, uint64(f.Bytes))
		h.Reset()
		h.Write(buf)
		out.add(h.Sum(digest[:0]))
		out.Rows += f.Rows
		out.Bytes += f.Bytes
	}
	return out
}
