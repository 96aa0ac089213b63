package mvcc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cockroachdb/pebble/v2"
)

// Engine key layout.
//
//	versioned:   userKey || 0x00 || wall (8 bytes BE) || logical (4 bytes BE) || 0x0d
//	unversioned: userKey || 0x00
//
// The last byte is the length of the version suffix including that byte
// (13), or 0 for an unversioned key; for an unversioned key that byte is
// also the 0x00 sentinel. Pebble's prefix of a key (Comparer.Split) is
// userKey || 0x00, which is itself the unversioned key of userKey. That is
// why the sentinel exists: Pebble requires that a bare prefix be a valid key
// that sorts before every version of it, and that bloom filters and
// NextPrefix work on prefixes. Appending a constant 0x00 preserves the
// bytewise order of user keys, so engine keys order first by user key.
//
// Within one user key, the unversioned key sorts first, then versions from
// newest to oldest. Wall times must be non-negative (HLC wall times are
// nanoseconds since the Unix epoch); a negative wall time would sort as if
// it were huge.
const (
	tsLen        = 12
	suffixLen    = tsLen + 1 // the version suffix and its length byte
	versionedLen = suffixLen + 1
)

// errBadKey wraps every malformed-key error.
var errBadKey = errors.New("malformed mvcc key")

// EncodeKey returns the engine key of userKey at ts. A zero ts makes the
// unversioned key, which sorts before every version of userKey.
func EncodeKey(userKey []byte, ts hlc.Timestamp) []byte {
	return appendKey(nil, userKey, ts)
}

// appendKey appends the engine key of userKey at ts to dst.
func appendKey(dst, userKey []byte, ts hlc.Timestamp) []byte {
	dst = append(dst, userKey...)
	dst = append(dst, 0)
	if ts.IsEmpty() {
		return dst
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts.WallTime))
	dst = binary.BigEndian.AppendUint32(dst, uint32(ts.Logical))
	return append(dst, suffixLen)
}

// DecodeKey splits an engine key into its user key and timestamp (zero for
// an unversioned key). userKey aliases engineKey.
func DecodeKey(engineKey []byte) (userKey []byte, ts hlc.Timestamp, err error) {
	n := len(engineKey)
	if n == 0 {
		return nil, hlc.Timestamp{}, fmt.Errorf("decoding key: empty: %w", errBadKey)
	}
	switch engineKey[n-1] {
	case 0:
		return engineKey[: n-1 : n-1], hlc.Timestamp{}, nil
	case suffixLen:
		if n < versionedLen || engineKey[n-versionedLen] != 0 {
			return nil, hlc.Timestamp{}, fmt.Errorf("decoding key %x: %w", engineKey, errBadKey)
		}
		p := n - versionedLen
		ts = decodeTS(engineKey[p+1 : n-1])
		if ts.IsEmpty() || ts.WallTime < 0 {
			return nil, hlc.Timestamp{}, fmt.Errorf("decoding key %x: invalid timestamp %s: %w", engineKey, ts, errBadKey)
		}
		return engineKey[:p:p], ts, nil
	default:
		return nil, hlc.Timestamp{}, fmt.Errorf("decoding key %x: bad suffix length %d: %w", engineKey, engineKey[n-1], errBadKey)
	}
}

func decodeTS(b []byte) hlc.Timestamp {
	return hlc.Timestamp{
		WallTime: int64(binary.BigEndian.Uint64(b)),
		Logical:  int32(binary.BigEndian.Uint32(b[8:])),
	}
}

// split returns the length of the Pebble prefix of an engine key (the user
// key and its sentinel). It never panics: anything that is not a
// well-formed versioned key is treated as all prefix, and a bare version
// suffix (13 bytes ending in 0x0d) as all suffix, as Pebble requires.
func split(k []byte) int {
	n := len(k)
	if n >= suffixLen && k[n-1] == suffixLen {
		return n - suffixLen
	}
	return n
}

// compareSuffixes orders version suffixes: the empty suffix (unversioned)
// first, then newest to oldest. Suffixes of equal length compare by their
// big-endian timestamp bytes, reversed.
func compareSuffixes(a, b []byte) int {
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return -1
	case len(b) == 0:
		return 1
	}
	return bytes.Compare(b, a)
}

func compareKeys(a, b []byte) int {
	sa, sb := split(a), split(b)
	if c := bytes.Compare(a[:sa], b[:sb]); c != 0 {
		return c
	}
	return compareSuffixes(a[sa:], b[sb:])
}

// Comparer orders engine keys: by user key, then unversioned before
// versioned, then newest version first. It is the comparer of every store
// and of every sstable this package writes; its name is stored in each file.
var Comparer = &pebble.Comparer{
	Name:                 "cairn.mvcc.v1",
	Compare:              compareKeys,
	Equal:                func(a, b []byte) bool { return compareKeys(a, b) == 0 },
	Split:                split,
	ComparePointSuffixes: compareSuffixes,
	CompareRangeSuffixes: compareSuffixes,
	AbbreviatedKey: func(k []byte) uint64 {
		return pebble.DefaultComparer.AbbreviatedKey(k[:split(k)])
	},
	Separator: separator,
	Successor: successor,
	ImmediateSuccessor: func(dst, prefix []byte) []byte {
		// The smallest prefix after userKey||0x00 is (userKey||0x00)||0x00.
		return append(append(dst, prefix...), 0)
	},
	FormatKey: func(k []byte) fmt.Formatter { return keyFormatter(k) },
	ValidateKey: func(k []byte) error {
		_, _, err := DecodeKey(k)
		return err
	},
}

// separator returns a short key k with a <= k < b for the sstable index.
// It only shortens when the user keys differ at a byte that can be
// incremented without reaching b's byte; the result is then an unversioned
// key, whose prefix lies strictly between the prefixes of a and b.
func separator(dst, a, b []byte) []byte {
	ua, ub := userKeyOf(a), userKeyOf(b)
	i := 0
	for i < len(ua) && i < len(ub) && ua[i] == ub[i] {
		i++
	}
	if i < len(ua) && i < len(ub) && ua[i] < 0xff && ua[i]+1 < ub[i] {
		dst = append(dst, ua[:i+1]...)
		dst[len(dst)-1]++
		return append(dst, 0)
	}
	return append(dst, a...)
}

// successor returns a short key k >= a: the unversioned key of the shortest
// user key greater than a's user key, or a itself.
func successor(dst, a []byte) []byte {
	ua := userKeyOf(a)
	for i := 0; i < len(ua); i++ {
		if ua[i] != 0xff {
			dst = append(dst, ua[:i+1]...)
			dst[len(dst)-1]++
			return append(dst, 0)
		}
	}
	return append(dst, a...)
}

// userKeyOf returns the user key of an engine key, tolerating malformed
// input (which the comparer must, since Pebble may pass anything).
func userKeyOf(k []byte) []byte {
	p := k[:split(k)]
	if len(p) > 0 && p[len(p)-1] == 0 {
		return p[:len(p)-1]
	}
	return p
}

type keyFormatter []byte

// Format prints "userKey@wall.logical", or just "userKey" when unversioned,
// escaping non-printable bytes.
func (k keyFormatter) Format(s fmt.State, _ rune) {
	uk, ts, err := DecodeKey(k)
	if err != nil {
		fmt.Fprintf(s, "<bad key %x>", []byte(k))
		return
	}
	fmt.Fprintf(s, "%q", uk)
	if !ts.IsEmpty() {
		fmt.Fprintf(s, "@%s", ts)
	}
}

// Value encoding: a live value is valueTag || v; a tombstone is empty.
const valueTag = 0x01

// EncodeValue returns the stored form of a live value v (which may be empty).
func EncodeValue(v []byte) []byte {
	out := make([]byte, 0, len(v)+1)
	out = append(out, valueTag)
	return append(out, v...)
}

// DecodeValue decodes a stored value. v aliases raw; tombstone reports a
// deletion (the empty raw value).
func DecodeValue(raw []byte) (v []byte, tombstone bool, err error) {
	if len(raw) == 0 {
		return nil, true, nil
	}
	if raw[0] != valueTag {
		return nil, false, fmt.Errorf("decoding value: unknown tag %#x", raw[0])
	}
	return raw[1:], false, nil
}
