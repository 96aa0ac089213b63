package cluster

import (
	"fmt"
	"testing"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/spans"
)

func TestGCThresholds(t *testing.T) {
	sp := func(a, b string) spans.Span { return spans.Span{Key: []byte(a), EndKey: []byte(b)} }
	at := func(w int64) hlc.Timestamp { return hlc.Timestamp{WallTime: w} }
	base := at(100)
	recs := []ProtectedTimestamp{
		{ID: "a", Timestamp: at(50), Spans: []spans.Span{sp("c", "e"), sp("x", "z")}},
		{ID: "b", Timestamp: at(30), Spans: []spans.Span{sp("d", "f")}},
		{ID: "c", Timestamp: at(200), Spans: []spans.Span{sp("a", "z")}}, // above base: no effect
		{ID: "d", Timestamp: hlc.Timestamp{}, Spans: []spans.Span{sp("g", "h")}},
	}
	got := gcThresholds(sp("b", "j"), base, recs)
	want := []gcPiece{
		{sp("b", "c"), at(100)},
		{sp("c", "d"), at(50)},
		{sp("d", "e"), at(30)},
		{sp("e", "f"), at(30)},
		{sp("f", "g"), at(100)},
		{sp("g", "h"), hlc.Timestamp{}},
		{sp("h", "j"), at(100)},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	if got := gcThresholds(sp("b", "j"), base, nil); len(got) != 1 || got[0].threshold != base {
		t.Fatalf("no records: %v", got)
	}
}
