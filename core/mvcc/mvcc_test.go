package mvcc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/spans"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
)

func ts(wall int64, logical int32) hlc.Timestamp {
	return hlc.Timestamp{WallTime: wall, Logical: logical}
}

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// entry is one MVCC entry as the tests see it.
type entry struct {
	Key  string
	TS   hlc.Timestamp
	Raw  string // stored value: "" is a tombstone
	Tomb bool
}

func (e entry) String() string { return fmt.Sprintf("%q@%s=%q", e.Key, e.TS, e.Raw) }

// model is a brute-force MVCC history: user key -> versions.
type model map[string]map[hlc.Timestamp]entry

func (m model) apply(ops []Op) {
	for _, op := range ops {
		vs := m[string(op.Key)]
		if vs == nil {
			vs = map[hlc.Timestamp]entry{}
			m[string(op.Key)] = vs
		}
		e := entry{Key: string(op.Key), TS: op.TS, Tomb: op.Delete}
		if !op.Delete {
			e.Raw = string(EncodeValue(op.Value))
		}
		vs[op.TS] = e
	}
}

// versions returns key's versions, newest first.
func (m model) versions(key string) []entry {
	var out []entry
	for _, e := range m[key] {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[j].TS.Less(out[i].TS) })
	return out
}

func (m model) keys(span spans.Span) []string {
	var out []string
	for k := range m {
		if spanHas(span, []byte(k)) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func spanHas(span spans.Span, k []byte) bool {
	if len(span.EndKey) == 0 {
		return bytes.Equal(span.Key, k)
	}
	return span.ContainsKey(k)
}

// export is what Export should select, by the definition in ExportOptions.
func (m model) export(o ExportOptions) []entry {
	var out []entry
	for _, k := range m.keys(o.Span) {
		for _, e := range m.versions(k) {
			if o.EndTS.Less(e.TS) {
				continue
			}
			if o.AllRevisions {
				if o.StartTS.Less(e.TS) {
					out = append(out, e)
				}
				continue
			}
			if o.StartTS.Less(e.TS) && (!e.Tomb || !o.StartTS.IsEmpty()) {
				out = append(out, e)
			}
			break
		}
	}
	return out
}

// read is what Scan should return at ts.
func (m model) read(span spans.Span, at hlc.Timestamp) []entry {
	var out []entry
	for _, k := range m.keys(span) {
		for _, e := range m.versions(k) {
			if at.Less(e.TS) {
				continue
			}
			if !e.Tomb {
				out = append(out, e)
			}
			break
		}
	}
	return out
}

func readSST(t testing.TB, data []byte) []entry {
	t.Helper()
	var out []entry
	err := IterateSST(context.Background(), bytes.NewReader(data), int64(len(data)), func(uk []byte, at hlc.Timestamp, raw []byte) error {
		out = append(out, entry{Key: string(uk), TS: at, Raw: string(raw), Tomb: len(raw) == 0})
		return nil
	})
	if err != nil {
		t.Fatalf("iterating sstable: %v", err)
	}
	return out
}

func scanAll(t testing.TB, s *Store, span spans.Span, at hlc.Timestamp) []entry {
	t.Helper()
	var out []entry
	err := s.Scan(context.Background(), span, at, func(k, v []byte) error {
		out = append(out, entry{Key: string(k), Raw: string(EncodeValue(v))})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffEntries(t testing.TB, what string, got, want []entry, withTS bool) {
	t.Helper()
	if !withTS {
		strip := func(es []entry) []entry {
			out := slices.Clone(es)
			for i := range out {
				out[i].TS = hlc.Timestamp{}
			}
			return out
		}
		got, want = strip(got), strip(want)
	}
	if slices.Equal(got, want) {
		return
	}
	n := min(len(got), len(want))
	for i := 0; i < n; i++ {
		if got[i] != want[i] {
			t.Fatalf("%s: entry %d: got %v, want %v (got %d entries, want %d)", what, i, got[i], want[i], len(got), len(want))
		}
	}
	t.Fatalf("%s: got %d entries, want %d; first extra: got[%d:]=%v want[%d:]=%v", what, len(got), len(want), n, got[n:min(len(got), n+3)], n, want[n:min(len(want), n+3)])
}

// randomHistory writes a deterministic random history in several flushed
// batches and returns its model. Keys use bytes 0x00 and 0xff to stress
// the encoding.
func randomHistory(t testing.TB, s *Store, seed uint64, nKeys, nBatches, opsPerBatch int, maxWall int64) model {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b9))
	alphabet := []byte{0x00, 0x01, 'a', 'b', 'z', 0xfe, 0xff}
	keys := map[string]bool{}
	var keyList []string
	for len(keyList) < nKeys {
		k := make([]byte, 1+rng.IntN(4))
		k[0] = 'k'
		for i := 1; i < len(k); i++ {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if !keys[string(k)] {
			keys[string(k)] = true
			keyList = append(keyList, string(k))
		}
	}
	m := model{}
	for b := 0; b < nBatches; b++ {
		var ops []Op
		for i := 0; i < opsPerBatch; i++ {
			op := Op{
				Key: []byte(keyList[rng.IntN(len(keyList))]),
				TS:  ts(1+rng.Int64N(maxWall), int32(rng.IntN(3))),
			}
			if rng.IntN(5) == 0 {
				op.Delete = true
			} else {
				op.Value = fmt.Appendf(nil, "v%d-%d", b, i)
				if rng.IntN(10) == 0 {
					op.Value = []byte{} // an empty live value is not a tombstone
				}
			}
			ops = append(ops, op)
		}
		if err := s.Apply(ops, false); err != nil {
			t.Fatal(err)
		}
		m.apply(ops)
		if b%2 == 1 {
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return m
}

func exportToBytes(t testing.TB, s *Store, o ExportOptions) ([]byte, ExportSummary) {
	t.Helper()
	var buf bytes.Buffer
	sum, err := s.Export(context.Background(), o, &buf)
	if err != nil {
		t.Fatalf("export %+v: %v", o, err)
	}
	if sum.FileBytes != int64(buf.Len()) {
		t.Fatalf("summary says %d file bytes, wrote %d", sum.FileBytes, buf.Len())
	}
	return buf.Bytes(), sum
}

func checkSummary(t testing.TB, sum ExportSummary, got []entry) {
	t.Helper()
	if sum.Entries != int64(len(got)) {
		t.Fatalf("summary has %d entries, file %d", sum.Entries, len(got))
	}
	if len(got) == 0 {
		return
	}
	var logical int64
	minTS, maxTS := got[0].TS, got[0].TS
	for _, e := range got {
		logical += int64(len(EncodeKey([]byte(e.Key), e.TS)) + len(e.Raw))
		if e.TS.Less(minTS) {
			minTS = e.TS
		}
		maxTS = maxTS.Forward(e.TS)
	}
	if sum.LogicalBytes != logical || sum.MinTS != minTS || sum.MaxTS != maxTS ||
		string(sum.FirstKey) != got[0].Key || string(sum.LastKey) != got[len(got)-1].Key {
		t.Fatalf("summary %+v does not match file (logical %d, ts [%s, %s], keys %q..%q)",
			sum, logical, minTS, maxTS, got[0].Key, got[len(got)-1].Key)
	}
}

func TestKeyEncoding(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		key string
		ts  hlc.Timestamp
	}{
		{"", hlc.Timestamp{}}, {"", ts(1, 0)}, {"a", hlc.Timestamp{}}, {"a\x00", ts(5, 7)},
		{"\xff\xff", ts(1<<62, 1<<30)}, {"k", hlc.MaxTimestamp},
	} {
		ek := EncodeKey([]byte(c.key), c.ts)
		uk, got, err := DecodeKey(ek)
		if err != nil || string(uk) != c.key || got != c.ts {
			t.Errorf("round trip %q@%s: got %q@%s, %v", c.key, c.ts, uk, got, err)
		}
		if err := Comparer.ValidateKey(ek); err != nil {
			t.Errorf("validating %x: %v", ek, err)
		}
		// Pebble's contract: the prefix is itself a key, sorting first.
		p := ek[:Comparer.Split(ek)]
		if Comparer.Split(p) != len(p) || (len(p) < len(ek) && Comparer.Compare(p, ek) >= 0) {
			t.Errorf("prefix %x of %x breaks the Split contract", p, ek)
		}
	}
	for _, bad := range [][]byte{nil, {0x0d}, []byte("abc\x07"), append([]byte("x\x01"), EncodeKey(nil, ts(1, 1))[1:]...), EncodeKey([]byte("a"), ts(-1, 0))} {
		if _, _, err := DecodeKey(bad); !errors.Is(err, errBadKey) {
			t.Errorf("DecodeKey(%x) = %v, want a malformed-key error", bad, err)
		}
	}

	// Pebble's own comparer checks.
	var prefixes, suffixes [][]byte
	for _, k := range []string{"", "a", "a\x00", "ab", "\xff", "k\x00\xff"} {
		prefixes = append(prefixes, EncodeKey([]byte(k), hlc.Timestamp{}))
	}
	for _, at := range []hlc.Timestamp{ts(1, 0), ts(1, 1), ts(2, 0), ts(1<<40, 3), hlc.MaxTimestamp} {
		suffixes = append(suffixes, EncodeKey(nil, at)[1:])
	}
	if err := pebble.CheckComparer(Comparer, prefixes, suffixes); err != nil {
		t.Fatal(err)
	}

	// Ordering: by user key bytewise, then unversioned first, then newest
	// version first.
	rng := rand.New(rand.NewPCG(1, 2))
	type kt struct {
		k  string
		ts hlc.Timestamp
	}
	var all []kt
	for i := 0; i < 400; i++ {
		k := make([]byte, rng.IntN(4))
		for j := range k {
			k[j] = []byte{0, 1, 0x7f, 0xfe, 0xff}[rng.IntN(5)]
		}
		var at hlc.Timestamp
		if rng.IntN(4) > 0 {
			at = ts(rng.Int64N(4)<<rng.IntN(62), int32(rng.IntN(3))<<rng.IntN(30))
		}
		all = append(all, kt{string(k), at})
	}
	want := slices.Clone(all)
	slices.SortFunc(want, func(a, b kt) int {
		if c := bytes.Compare([]byte(a.k), []byte(b.k)); c != 0 {
			return c
		}
		switch {
		case a.ts == b.ts:
			return 0
		case a.ts.IsEmpty():
			return -1
		case b.ts.IsEmpty():
			return 1
		}
		return b.ts.Compare(a.ts)
	})
	got := slices.Clone(all)
	slices.SortFunc(got, func(a, b kt) int {
		return Comparer.Compare(EncodeKey([]byte(a.k), a.ts), EncodeKey([]byte(b.k), b.ts))
	})
	if !slices.Equal(got, want) {
		t.Fatalf("engine order differs from MVCC order")
	}
	// Separator and Successor: a <= sep < b, a <= succ, and both are keys.
	for i := 0; i+1 < len(want); i++ {
		a, b := EncodeKey([]byte(want[i].k), want[i].ts), EncodeKey([]byte(want[i+1].k), want[i+1].ts)
		if Comparer.Compare(a, b) == 0 {
			continue
		}
		sep := Comparer.Separator(nil, a, b)
		if Comparer.Compare(a, sep) > 0 || Comparer.Compare(sep, b) >= 0 {
			t.Fatalf("Separator(%s, %s) = %s out of range", Comparer.FormatKey(a), Comparer.FormatKey(b), Comparer.FormatKey(sep))
		}
		if succ := Comparer.Successor(nil, a); Comparer.Compare(a, succ) > 0 {
			t.Fatalf("Successor(%s) = %s is smaller", Comparer.FormatKey(a), Comparer.FormatKey(succ))
		}
	}
	if got := fmt.Sprint(Comparer.FormatKey(EncodeKey([]byte("a\x00"), ts(5, 7)))); got != `"a\x00"@5.0000000007` {
		t.Errorf("FormatKey = %s", got)
	}

	// Values.
	for _, v := range [][]byte{nil, {}, []byte("x")} {
		got, tomb, err := DecodeValue(EncodeValue(v))
		if err != nil || tomb || !bytes.Equal(got, v) {
			t.Errorf("value round trip %q: %q %v %v", v, got, tomb, err)
		}
	}
	if _, tomb, err := DecodeValue(nil); !tomb || err != nil {
		t.Errorf("empty stored value must be a tombstone")
	}
	if _, _, err := DecodeValue([]byte{7}); err == nil {
		t.Errorf("unknown tag decoded without error")
	}
}

func TestGetScan(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ops := []Op{
		{Key: []byte("a"), TS: ts(10, 0), Value: []byte("a10")},
		{Key: []byte("a"), TS: ts(20, 0), Delete: true},
		{Key: []byte("a"), TS: ts(30, 1), Value: []byte("a30")},
		{Key: []byte("b"), TS: ts(15, 0), Value: []byte("b15")},
		{Key: []byte("b\x00"), TS: ts(5, 0), Value: []byte{}},
		{Key: []byte("c"), TS: ts(5, 0), Delete: true},
	}
	if err := s.Apply(ops, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]Op{{Key: []byte("x")}}, false); err == nil {
		t.Fatal("zero timestamp accepted")
	}
	for _, c := range []struct {
		key   string
		at    hlc.Timestamp
		want  string
		found bool
	}{
		{"a", ts(9, 0), "", false}, {"a", ts(10, 0), "a10", true}, {"a", ts(19, 9), "a10", true},
		{"a", ts(20, 0), "", false}, {"a", ts(30, 0), "", false}, {"a", ts(30, 1), "a30", true},
		{"a", hlc.MaxTimestamp, "a30", true}, {"b", ts(100, 0), "b15", true}, {"b\x00", ts(5, 0), "", true},
		{"c", ts(6, 0), "", false}, {"zz", ts(6, 0), "", false}, {"a", hlc.Timestamp{}, "", false},
		{"a", ts(-5, 0), "", false},
	} {
		v, found, err := s.Get([]byte(c.key), c.at)
		if err != nil || found != c.found || string(v) != c.want {
			t.Errorf("Get(%q, %s) = %q, %v, %v; want %q, %v", c.key, c.at, v, found, err, c.want, c.found)
		}
	}
	m := model{}
	m.apply(ops)
	all := spans.Span{Key: []byte("a"), EndKey: []byte("z")}
	for _, at := range []hlc.Timestamp{ts(1, 0), ts(10, 0), ts(20, 0), ts(25, 0), ts(30, 1), hlc.MaxTimestamp} {
		diffEntries(t, fmt.Sprintf("scan at %s", at), scanAll(t, s, all, at), m.read(all, at), false)
	}
	if got := scanAll(t, s, all, hlc.Timestamp{}); len(got) != 0 {
		t.Fatalf("scan at zero time: %v", got)
	}
	if err := s.Scan(context.Background(), all, ts(-1, 0), func(k, v []byte) error { return nil }); err == nil {
		t.Fatal("scan at a negative time accepted")
	}
	one := spans.Span{Key: []byte("b")}
	diffEntries(t, "single-key scan", scanAll(t, s, one, ts(100, 0)), m.read(one, ts(100, 0)), false)

	stop := errors.New("stop")
	n := 0
	err := s.Scan(context.Background(), all, hlc.MaxTimestamp, func(k, v []byte) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("scan stopped by fn: %v after %d calls", err, n)
	}
}

func TestExportMatchesModel(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	m := randomHistory(t, s, 42, 300, 8, 400, 100)
	full := spans.Span{Key: []byte("k"), EndKey: []byte("l")}
	sub := spans.Span{Key: []byte("k\x01"), EndKey: []byte("kz\xff")}
	cases := 0
	for _, span := range []spans.Span{full, sub, {Key: []byte("k")}} {
		for _, r := range [][2]hlc.Timestamp{
			{{}, ts(100, 5)}, {{}, ts(50, 1)}, {ts(30, 0), ts(60, 2)}, {ts(99, 2), hlc.MaxTimestamp}, {ts(40, 1), ts(40, 2)},
		} {
			for _, all := range []bool{false, true} {
				o := ExportOptions{Span: span, StartTS: r[0], EndTS: r[1], AllRevisions: all}
				data, sum := exportToBytes(t, s, o)
				want := m.export(o)
				if len(want) == 0 {
					if len(data) != 0 || sum.Entries != 0 {
						t.Fatalf("%+v: empty selection wrote %d bytes, %d entries", o, len(data), sum.Entries)
					}
					continue
				}
				got := readSST(t, data)
				diffEntries(t, fmt.Sprintf("export %+v", o), got, want, true)
				checkSummary(t, sum, got)
				if sum.ResumeKey != nil {
					t.Fatalf("resume key %q without a target size", sum.ResumeKey)
				}
				cases++
			}
		}
	}
	if cases < 20 {
		t.Fatalf("only %d non-empty cases; the test data is too thin", cases)
	}
}

func TestExportTargetSize(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	// Many versions per key, with values big enough that keys straddle
	// block and file boundaries.
	rng := rand.New(rand.NewPCG(7, 7))
	m := model{}
	for b := 0; b < 4; b++ {
		var ops []Op
		for i := 0; i < 500; i++ {
			v := make([]byte, 50+rng.IntN(400))
			for j := range v {
				v[j] = byte(rng.IntN(256))
			}
			ops = append(ops, Op{Key: fmt.Appendf(nil, "key%03d", rng.IntN(120)), TS: ts(int64(1+rng.IntN(1000)), 0), Value: v, Delete: rng.IntN(8) == 0})
		}
		if err := s.Apply(ops, false); err != nil {
			t.Fatal(err)
		}
		m.apply(ops)
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	span := spans.Span{Key: []byte("key"), EndKey: []byte("kez")}
	for _, o := range []ExportOptions{
		{Span: span, EndTS: ts(1000, 0), AllRevisions: true, TargetSize: 16 << 10},
		{Span: span, EndTS: ts(800, 0), TargetSize: 4 << 10},
		{Span: span, StartTS: ts(200, 0), EndTS: ts(900, 0), AllRevisions: true, TargetSize: 1},
	} {
		single, _ := exportToBytes(t, s, ExportOptions{Span: o.Span, StartTS: o.StartTS, EndTS: o.EndTS, AllRevisions: o.AllRevisions})
		want := readSST(t, single)
		diffEntries(t, "single file", want, m.export(o), true)

		var union []entry
		cur := o
		files := 0
		for {
			data, sum := exportToBytes(t, s, cur)
			files++
			if sum.Entries == 0 {
				t.Fatalf("file %d is empty", files)
			}
			got := readSST(t, data)
			checkSummary(t, sum, got)
			if len(union) > 0 && union[len(union)-1].Key == got[0].Key {
				t.Fatalf("key %q split across files %d and %d", got[0].Key, files-1, files)
			}
			union = append(union, got...)
			if sum.ResumeKey == nil {
				break
			}
			if bytes.Compare(sum.ResumeKey, sum.LastKey) <= 0 {
				t.Fatalf("resume key %q not after last key %q", sum.ResumeKey, sum.LastKey)
			}
			if o.TargetSize > 1 && sum.FileBytes < o.TargetSize/2 {
				t.Fatalf("file %d has %d bytes, far below the target %d", files, sum.FileBytes, o.TargetSize)
			}
			cur.Span.Key = sum.ResumeKey
		}
		if files < 3 {
			t.Fatalf("target size %d gave only %d files", o.TargetSize, files)
		}
		diffEntries(t, fmt.Sprintf("union of %d files", files), union, want, true)
	}
}

// TestExportSkipsBlocks builds two disjoint time ranges in separate flushed
// sstables and checks that a narrow export reads neither the other range's
// files nor its blocks, and still returns the right entries.
func TestExportSkipsBlocks(t *testing.T) {
	t.Parallel()
	s, err := Open(t.TempDir(), Options{Logger: slog.New(slog.DiscardHandler), disableCompactions: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := model{}
	val := bytes.Repeat([]byte("v"), 200)
	write := func(lo, hi int64, keyMod int) {
		for b := 0; b < 3; b++ {
			var ops []Op
			for i := 0; i < 600; i++ {
				wall := lo + int64((b*600+i)%int(hi-lo))
				ops = append(ops, Op{Key: fmt.Appendf(nil, "r%05d", (b*600+i)*keyMod%1800), TS: ts(wall, 0), Value: val})
			}
			if err := s.Apply(ops, false); err != nil {
				t.Fatal(err)
			}
			m.apply(ops)
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(1000, 2000, 1) // old versions in their own files
	write(5000, 6000, 7) // new versions, other files
	// A file that mixes both ranges, so that block-level (not only
	// file-level) skipping is needed: ascending keys, time alternating by
	// runs of 100 keys.
	var ops []Op
	for i := 0; i < 1800; i++ {
		wall := int64(1000 + i)
		if (i/100)%2 == 1 {
			wall = 5000 + int64(i)
		}
		ops = append(ops, Op{Key: fmt.Appendf(nil, "r%05d", i), TS: ts(wall, 1), Value: val})
	}
	if err := s.Apply(ops, false); err != nil {
		t.Fatal(err)
	}
	m.apply(ops)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}

	span := spans.Span{Key: []byte("r"), EndKey: []byte("s")}
	// Baseline: a time range covering everything reads every entry.
	p0 := s.pointsRead.Load()
	exportToBytes(t, s, ExportOptions{Span: span, EndTS: ts(7000, 0), AllRevisions: true})
	total := s.pointsRead.Load() - p0
	if total < 3*1800 {
		t.Fatalf("a full export read only %d entries", total)
	}
	for _, o := range []ExportOptions{
		{Span: span, StartTS: ts(4999, 0), EndTS: ts(7000, 0), AllRevisions: true},
		{Span: span, StartTS: ts(4999, 0), EndTS: ts(7000, 0)},
		{Span: span, StartTS: ts(1200, 0), EndTS: ts(1300, 0), AllRevisions: true},
	} {
		before, p0 := s.filterRejected.Load(), s.pointsRead.Load()
		data, sum := exportToBytes(t, s, o)
		rejected, read := s.filterRejected.Load()-before, s.pointsRead.Load()-p0
		got := readSST(t, data)
		diffEntries(t, fmt.Sprintf("export %+v", o), got, m.export(o), true)
		checkSummary(t, sum, got)
		t.Logf("export %s..%s: %d blocks/files rejected, read %d of %d entries", o.StartTS, o.EndTS, rejected, read, total)
		// 3 files of the other range, plus blocks of the mixed file.
		if rejected < 4 || read > total*2/3 {
			t.Fatalf("export %+v: the time filter rejected only %d blocks/files; read %d of %d entries", o, rejected, read, total)
		}
	}
	// A time range that matches nothing skips everything.
	before := s.filterRejected.Load()
	data, sum := exportToBytes(t, s, ExportOptions{Span: span, StartTS: ts(3000, 0), EndTS: ts(4000, 0), AllRevisions: true})
	if len(data) != 0 || sum.Entries != 0 {
		t.Fatalf("empty range exported %d entries", sum.Entries)
	}
	if s.filterRejected.Load()-before < 7 {
		t.Fatalf("empty range rejected only %d files", s.filterRejected.Load()-before)
	}
}

// TestRestoreRoundTrip exports a span, rewrites its key prefix through
// IterateSST and SSTWriter, ingests the result into another store and
// compares reads.
func TestRestoreRoundTrip(t *testing.T) {
	t.Parallel()
	src := openStore(t)
	m := randomHistory(t, src, 99, 200, 6, 300, 60)
	end := ts(45, 1)
	span := spans.Span{Key: []byte("k"), EndKey: []byte("l")}
	dst := openStore(t)
	// Something already in the destination outside the restored span stays.
	if err := dst.Apply([]Op{{Key: []byte("other"), TS: ts(1, 0), Value: []byte("keep")}}, false); err != nil {
		t.Fatal(err)
	}

	var paths, rawPaths []string
	{
		cur := ExportOptions{Span: span, EndTS: end, AllRevisions: true, TargetSize: 8 << 10}
		for n := 0; ; n++ {
			data, sum := exportToBytes(t, src, cur)
			rawPath := filepath.Join(t.TempDir(), fmt.Sprintf("raw%d.sst", n))
			if err := os.WriteFile(rawPath, data, 0o644); err != nil {
				t.Fatal(err)
			}
			rawPaths = append(rawPaths, rawPath)
			path := filepath.Join(t.TempDir(), fmt.Sprintf("f%d.sst", n))
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w := NewSSTWriter(f)
			err = IterateSST(context.Background(), bytes.NewReader(data), int64(len(data)), func(uk []byte, at hlc.Timestamp, raw []byte) error {
				nk := append([]byte("NEW/"), uk[1:]...) // "k..." -> "NEW/..."
				return w.Add(nk, at, raw)
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, path)
			if sum.ResumeKey == nil {
				break
			}
			cur.Span.Key = sum.ResumeKey
		}
	}
	if len(paths) < 2 {
		t.Fatalf("want several files, got %d", len(paths))
	}
	if err := dst.Ingest(context.Background(), paths); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(paths[0]); !os.IsNotExist(err) {
		t.Fatalf("ingested file still at its path: %v", err)
	}
	// Exported files are ingestible as they are.
	raw := openStore(t)
	if err := raw.Ingest(context.Background(), rawPaths); err != nil {
		t.Fatal(err)
	}
	for _, at := range []hlc.Timestamp{ts(20, 0), end} {
		diffEntries(t, fmt.Sprintf("raw ingest scan at %s", at), scanAll(t, raw, span, at), m.read(span, at), false)
	}
	newSpan := spans.Span{Key: []byte("NEW/"), EndKey: []byte("NEW0")}
	for _, at := range []hlc.Timestamp{ts(10, 0), ts(30, 2), end, hlc.MaxTimestamp} {
		want := m.read(span, min2(at, end))
		for i := range want {
			want[i].Key = "NEW/" + want[i].Key[1:]
		}
		diffEntries(t, fmt.Sprintf("restored scan at %s", at), scanAll(t, dst, newSpan, at), want, false)
	}
	if v, ok, err := dst.Get([]byte("other"), ts(5, 0)); err != nil || !ok || string(v) != "keep" {
		t.Fatalf("unrelated key: %q %v %v", v, ok, err)
	}
	// ClearSpan undoes the restore and nothing else.
	if err := dst.ClearSpan(newSpan); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, dst, newSpan, hlc.MaxTimestamp); len(got) != 0 {
		t.Fatalf("%d keys left after ClearSpan", len(got))
	}
	if _, ok, _ := dst.Get([]byte("other"), ts(5, 0)); !ok {
		t.Fatal("ClearSpan removed a key outside its span")
	}
	if u, err := dst.DiskUsage(); err != nil || u <= 0 {
		t.Fatalf("disk usage %d, %v", u, err)
	}
	if dst.Metrics() == "" {
		t.Fatal("empty metrics")
	}
}

func min2(a, b hlc.Timestamp) hlc.Timestamp {
	if a.Less(b) {
		return a
	}
	return b
}

func TestSSTWriterContract(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewSSTWriter(&buf)
	if err := w.Add([]byte("b"), ts(5, 0), EncodeValue([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	if err := w.Add([]byte("b"), ts(6, 0), EncodeValue([]byte("x"))); err == nil {
		t.Fatal("a newer version after an older one was accepted")
	}
	if err := w.Add([]byte("a"), ts(1, 0), EncodeValue(nil)); err == nil {
		t.Fatal("a smaller key was accepted")
	}
	if err := w.Add([]byte("c"), hlc.Timestamp{}, nil); err == nil {
		t.Fatal("an unversioned key was accepted")
	}
	if err := w.Add([]byte("c"), ts(1, 0), []byte{9}); err == nil {
		t.Fatal("a bad value was accepted")
	}
	if err := w.Add([]byte("c"), ts(1, 0), nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Abort() // no-op after Close
	got := readSST(t, buf.Bytes())
	if len(got) != 2 || got[0].Key != "b" || !got[1].Tomb {
		t.Fatalf("got %v", got)
	}

	// An empty writer still makes a valid (empty) table.
	buf.Reset()
	w = NewSSTWriter(&buf)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readSST(t, buf.Bytes()); len(got) != 0 {
		t.Fatalf("empty table has %d entries", len(got))
	}

	// Abort midway leaves no goroutine behind and rejects further use.
	w = NewSSTWriter(io.Discard)
	for i := 0; i < 10000; i++ {
		if err := w.Add(fmt.Appendf(nil, "k%06d", i), ts(1, 0), EncodeValue(bytes.Repeat([]byte("x"), 100))); err != nil {
			t.Fatal(err)
		}
	}
	w.Abort()
	if err := w.Add([]byte("z"), ts(1, 0), nil); err == nil {
		t.Fatal("add after abort accepted")
	}

	// A failing io.Writer surfaces its error.
	w = NewSSTWriter(failWriter{})
	for i := 0; i < 2000; i++ {
		_ = w.Add(fmt.Appendf(nil, "k%06d", i), ts(1, 0), EncodeValue(bytes.Repeat([]byte("x"), 100)))
	}
	if err := w.Close(); err == nil {
		t.Fatal("close succeeded on a failing writer")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestIterateSSTCorrupt(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	randomHistory(t, s, 5, 100, 2, 300, 50)
	data, _ := exportToBytes(t, s, ExportOptions{Span: spans.Span{Key: []byte("k"), EndKey: []byte("l")}, EndTS: ts(100, 0), AllRevisions: true})
	orig := readSST(t, data)
	try := func(b []byte) (got []entry, err error) {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("IterateSST panicked: %v", p)
			}
		}()
		err = IterateSST(context.Background(), bytes.NewReader(b), int64(len(b)), func(uk []byte, at hlc.Timestamp, raw []byte) error {
			got = append(got, entry{Key: string(uk), TS: at, Raw: string(raw), Tomb: len(raw) == 0})
			return nil
		})
		return got, err
	}
	// Truncations.
	for n := 0; n < len(data); n += 1 + n/8 {
		if _, err := try(data[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(data))
		}
	}
	// Bit flips at every byte: an error, or (for bytes no reader depends
	// on) exactly the original entries; never a panic or silent change.
	undetected, panics, tried := 0, 0, 0
	for i := 0; i < len(data); i++ {
		if i < len(data)-384 && i%11 != 0 {
			continue // every 11th byte of the data blocks, every byte of the tail (index, properties, footer)
		}
		tried++
		b := slices.Clone(data)
		b[i] ^= 0x10
		got, err := try(b)
		if err == nil {
			if !slices.Equal(got, orig) {
				t.Fatalf("flip at byte %d of %d: changed entries without an error", i, len(data))
			}
			undetected++
		} else if strings.Contains(err.Error(), "panic:") {
			panics++
		} else if !errors.Is(err, ErrCorruptSST) {
			t.Fatalf("flip at byte %d: error %v does not wrap ErrCorruptSST", i, err)
		}
	}
	if undetected > tried/20 {
		t.Fatalf("%d of %d flips went undetected", undetected, tried)
	}
	t.Logf("%d of %d single-byte flips were harmless, %d recovered panics", undetected, tried, panics)
	// Garbage and a table of another comparer.
	if _, err := try(bytes.Repeat([]byte{0xab}, 4096)); err == nil {
		t.Fatal("garbage accepted")
	}
	// A table written with another comparer.
	var foreign bytes.Buffer
	fw := sstable.NewWriter(&writable{w: &foreign}, sstable.WriterOptions{TableFormat: sstable.TableFormatPebblev4})
	if err := fw.Set([]byte("a"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := try(foreign.Bytes()); !errors.Is(err, ErrCorruptSST) {
		t.Fatalf("foreign table: %v", err)
	}
	// A failing reader is an I/O error, not corruption.
	for _, after := range []int{0, 2, 4} {
		r := &failingReaderAt{r: bytes.NewReader(data), after: after}
		err := IterateSST(context.Background(), r, int64(len(data)), func([]byte, hlc.Timestamp, []byte) error { return nil })
		if !errors.Is(err, errNetwork) || errors.Is(err, ErrCorruptSST) {
			t.Fatalf("reader failing after %d reads: %v", after, err)
		}
	}
	// fn's error comes back as is.
	stop := errors.New("stop")
	if err := IterateSST(context.Background(), bytes.NewReader(data), int64(len(data)), func([]byte, hlc.Timestamp, []byte) error { return stop }); err != stop {
		t.Fatalf("fn error came back as %v", err)
	}
}

var errNetwork = errors.New("connection reset")

// failingReaderAt fails every read after the first few.
type failingReaderAt struct {
	r     io.ReaderAt
	after int
}

func (f *failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if f.after == 0 {
		return 0, errNetwork
	}
	f.after--
	return f.r.ReadAt(p, off)
}

// cancelWriter cancels a context on its first write.
type cancelWriter struct {
	cancel context.CancelFunc
	n      int
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.cancel()
	w.n += len(p)
	return len(p), nil
}

type countingWriter struct{ n, writes, max int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	w.writes++
	w.max = max(w.max, int64(len(p)))
	return len(p), nil
}

func TestExportCancel(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	var ops []Op
	for i := 0; i < 20000; i++ {
		ops = append(ops, Op{Key: fmt.Appendf(nil, "c%06d", i), TS: ts(10, 0), Value: bytes.Repeat([]byte("v"), 64)})
	}
	if err := s.Apply(ops, false); err != nil {
		t.Fatal(err)
	}
	o := ExportOptions{Span: spans.Span{Key: []byte("c"), EndKey: []byte("d")}, EndTS: ts(10, 0)}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Export(ctx, o, io.Discard); !errors.Is(err, context.Canceled) {
		t.Fatalf("export with a cancelled context: %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	w := &cancelWriter{cancel: cancel}
	sum, err := s.Export(ctx, o, w)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("export cancelled midway returned %v", err)
	}
	if sum.Entries != 0 {
		t.Fatalf("cancelled export returned a summary: %+v", sum)
	}
	// The store is still usable, and the export completes without cancel,
	// streamed in block-sized writes rather than one buffered file.
	cw := &countingWriter{}
	sum, err = s.Export(context.Background(), o, cw)
	if err != nil || sum.Entries != 20000 || int64(w.n) >= sum.FileBytes {
		t.Fatalf("export after cancel: %d entries, %v (cancelled one wrote %d of %d bytes)", sum.Entries, err, w.n, sum.FileBytes)
	}
	if cw.writes < 10 || cw.max > 256<<10 || cw.n != sum.FileBytes {
		t.Fatalf("%d bytes arrived in %d writes of at most %d bytes", cw.n, cw.writes, cw.max)
	}
}

func TestExportValidation(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	span := spans.Span{Key: []byte("a"), EndKey: []byte("b")}
	for _, o := range []ExportOptions{
		{Span: span},
		{Span: span, StartTS: ts(5, 1), EndTS: ts(5, 0)},
		{Span: spans.Span{Key: []byte("b"), EndKey: []byte("a")}, EndTS: ts(1, 0)},
	} {
		if _, err := s.Export(context.Background(), o, io.Discard); err == nil {
			t.Errorf("export %+v accepted", o)
		}
	}
	if err := s.Apply([]Op{{Key: []byte("a1"), TS: ts(5, 0), Value: []byte("x")}}, false); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if sum, err := s.Export(context.Background(), ExportOptions{Span: span, StartTS: ts(5, 0), EndTS: ts(5, 0)}, &buf); err != nil || sum.Entries != 0 || buf.Len() != 0 {
		t.Fatalf("empty time range: %+v, %v, %d bytes", sum, err, buf.Len())
	}
}

func BenchmarkExport(b *testing.B) {
	s := openStore(b)
	const valueSize, total = 1 << 10, 64 << 20
	n := total / valueSize
	val := bytes.Repeat([]byte("x"), valueSize)
	for i := 0; i < n; i += 1000 {
		var ops []Op
		for j := i; j < i+1000 && j < n; j++ {
			ops = append(ops, Op{Key: fmt.Appendf(nil, "bench/%08d", j), TS: ts(int64(10+j%7), 0), Value: val})
		}
		if err := s.Apply(ops, false); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		b.Fatal(err)
	}
	o := ExportOptions{Span: spans.Span{Key: []byte("bench/"), EndKey: []byte("bench0")}, EndTS: ts(100, 0), AllRevisions: true}
	for _, dest := range []string{"discard", "file"} {
		b.Run(dest, func(b *testing.B) {
			b.SetBytes(int64(n) * int64(valueSize+len("bench/00000000")))
			dir := b.TempDir()
			for i := 0; b.Loop(); i++ {
				var w io.Writer = io.Discard
				var f *os.File
				if dest == "file" {
					var err error
					f, err = os.Create(filepath.Join(dir, fmt.Sprintf("%d.sst", i%2)))
					if err != nil {
						b.Fatal(err)
					}
					w = f
				}
				sum, err := s.Export(context.Background(), o, w)
				if err != nil || sum.Entries != int64(n) {
					b.Fatalf("%d entries, %v", sum.Entries, err)
				}
				if f != nil {
					if err := f.Close(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
