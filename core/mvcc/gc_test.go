package mvcc

import (
	"context"
	"fmt"
	"testing"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/spans"
)

// gc applies GC's definition to the model: for each key in span, keep the
// versions above threshold and the newest one at or below it unless it is
// a tombstone. It returns the number of versions removed and how many of
// them were tombstones.
func (m model) gc(span spans.Span, threshold hlc.Timestamp) (removed, tombs int64) {
	if threshold.IsEmpty() {
		return 0, 0
	}
	for _, k := range m.keys(span) {
		seen := false
		for _, e := range m.versions(k) {
			if threshold.Less(e.TS) {
				continue
			}
			if seen || e.Tomb {
				delete(m[k], e.TS)
				removed++
				if e.Tomb {
					tombs++
				}
			}
			seen = true
		}
		if len(m[k]) == 0 {
			delete(m, k)
		}
	}
	return removed, tombs
}

// allEntries is every version in span, as an all-revisions export sees it.
func allEntries(t *testing.T, s *Store, span spans.Span) []entry {
	t.Helper()
	data, _ := exportToBytes(t, s, ExportOptions{Span: span, EndTS: hlc.MaxTimestamp, AllRevisions: true})
	if len(data) == 0 {
		return nil
	}
	return readSST(t, data)
}

// readTimes returns threshold, every distinct version timestamp above it,
// the successor of each, and the maximum timestamp: every read time at or
// above threshold whose answer can differ from its neighbours'.
func readTimes(m model, threshold hlc.Timestamp) []hlc.Timestamp {
	set := map[hlc.Timestamp]bool{threshold: true, hlc.MaxTimestamp: true}
	for k := range m {
		for at := range m[k] {
			if threshold.Less(at) {
				set[at], set[at.Next()] = true, true
			}
		}
	}
	out := make([]hlc.Timestamp, 0, len(set))
	for at := range set {
		out = append(out, at)
	}
	return out
}

// TestGCMatchesModel is not parallel: it shrinks gcBatchBytes.
func TestGCMatchesModel(t *testing.T) {
	defer func(n int) { gcBatchBytes = n }(gcBatchBytes)
	gcBatchBytes = 512 // many small batches
	full := spans.Span{Key: []byte("k"), EndKey: []byte("l")}
	sub := spans.Span{Key: []byte("k\x01"), EndKey: []byte("kz\xff")}
	for _, tc := range []struct {
		span      spans.Span
		threshold hlc.Timestamp
	}{
		{full, ts(50, 1)},
		{full, ts(100, 5)}, // above every version
		{full, ts(1, 0)},   // at the bottom
		{sub, ts(70, 0)},
		{spans.Span{Key: []byte("k")}, ts(60, 2)},
		{full, hlc.Timestamp{}}, // zero: nothing
	} {
		t.Run(fmt.Sprintf("%s@%s", tc.span, tc.threshold), func(t *testing.T) {
			s := openStore(t)
			m := randomHistory(t, s, 7, 200, 8, 300, 100)
			times := readTimes(m, tc.threshold)
			before := map[hlc.Timestamp][]entry{}
			for _, at := range times {
				before[at] = scanAll(t, s, full, at)
			}
			removed, tombs := m.gc(tc.span, tc.threshold)

			st, err := s.GC(context.Background(), tc.span, tc.threshold)
			if err != nil {
				t.Fatal(err)
			}
			if st.Deleted != removed || st.DeletedTombstones != tombs {
				t.Fatalf("stats %+v; the model removed %d versions, %d tombstones", st, removed, tombs)
			}
			if !tc.threshold.IsEmpty() && tc.threshold != ts(1, 0) && removed == 0 {
				t.Fatal("the model removed nothing; the test data is too thin")
			}
			// What remains is exactly the model's history, inside the
			// span and outside it.
			want := m.export(ExportOptions{Span: full, EndTS: hlc.MaxTimestamp, AllRevisions: true})
			diffEntries(t, "remaining versions", allEntries(t, s, full), want, true)
			// Every read at or above the threshold is unchanged.
			for _, at := range times {
				diffEntries(t, fmt.Sprintf("read at %s", at), scanAll(t, s, full, at), before[at], false)
				diffEntries(t, fmt.Sprintf("model read at %s", at), m.read(full, at), before[at], false)
			}
			// A second GC finds nothing more to remove.
			st, err = s.GC(context.Background(), tc.span, tc.threshold)
			if err != nil || st.Deleted != 0 {
				t.Fatalf("second GC: %+v, %v", st, err)
			}
		})
	}
}

func TestGCRemovesWhatOldReadsSaw(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	k := []byte("a")
	ops := []Op{
		{Key: k, TS: ts(10, 0), Value: []byte("v10")},
		{Key: k, TS: ts(20, 0), Value: []byte("v20")},
		{Key: k, TS: ts(30, 0), Delete: true},
		{Key: k, TS: ts(40, 0), Value: []byte("v40")},
		{Key: []byte("b"), TS: ts(10, 0), Value: []byte("b10")},
		{Key: []byte("b"), TS: ts(15, 0), Delete: true},
	}
	if err := s.Apply(ops, false); err != nil {
		t.Fatal(err)
	}
	all := spans.Span{Key: []byte("a"), EndKey: []byte("c")}
	st, err := s.GC(context.Background(), all, ts(35, 0))
	if err != nil {
		t.Fatal(err)
	}
	// a@30 (the tombstone reads at 35 see), a@20, a@10, b@15, b@10.
	if st.Deleted != 5 || st.DeletedTombstones != 2 || st.Keys != 2 {
		t.Fatalf("stats %+v", st)
	}
	for _, c := range []struct {
		key   string
		at    hlc.Timestamp
		value string
		found bool
	}{
		{"a", ts(40, 0), "v40", true},
		{"a", ts(35, 0), "", false},
		{"a", ts(25, 0), "", false}, // was v20: below the threshold, gone
		{"b", ts(12, 0), "", false}, // was b10
	} {
		v, ok, err := s.Get([]byte(c.key), c.at)
		if err != nil || ok != c.found || string(v) != c.value {
			t.Errorf("get %s at %s: %q, %v, %v; want %q, %v", c.key, c.at, v, ok, err, c.value, c.found)
		}
	}
}

func TestGCValidationAndCancel(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	randomHistory(t, s, 3, 100, 2, 400, 100)
	full := spans.Span{Key: []byte("k"), EndKey: []byte("l")}
	if _, err := s.GC(context.Background(), spans.Span{Key: []byte("b"), EndKey: []byte("a")}, ts(5, 0)); err == nil {
		t.Fatal("GC of an inverted span: no error")
	}
	if _, err := s.GC(context.Background(), full, ts(-1, 0)); err == nil {
		t.Fatal("GC below a negative threshold: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.GC(ctx, full, ts(90, 0)); err != context.Canceled {
		t.Fatalf("cancelled GC: %v, want context.Canceled", err)
	}
}
