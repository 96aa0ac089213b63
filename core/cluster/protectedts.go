package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/spans"
)

const protectedTSPrefix = Prefix + "protectedts/"

func protectedTSKey(id string) string { return protectedTSPrefix + id }

// ProtectedTimestamp is a promise, kept in etcd, that garbage collection
// leaves every version in Spans that a read at Timestamp sees: no node GCs
// those spans at a threshold above Timestamp while the record exists. A
// backup writes one before it reads anything and removes it when it
// succeeds, fails or is cancelled; a paused backup keeps it.
type ProtectedTimestamp struct {
	// ID names the record; its owner derives it (a backup from its job id)
	// so that protecting again after a restart finds the same record.
	ID string `json:"id"`
	// JobID is the job that owns the record, for operators; 0 for none.
	JobID int64 `json:"job_id,omitempty"`
	// Timestamp is the protected read time. The zero timestamp protects
	// every version.
	Timestamp hlc.Timestamp `json:"timestamp"`
	// Spans are the protected key spans; each needs an EndKey.
	Spans []spans.Span `json:"spans"`
	// Created is when the record was first written; Protect sets it.
	Created time.Time `json:"created"`
}

// sameProtection reports whether a and b protect the same thing (their
// creation times aside).
func sameProtection(a, b ProtectedTimestamp) bool {
	return a.ID == b.ID && a.JobID == b.JobID && a.Timestamp == b.Timestamp &&
		slices.EqualFunc(a.Spans, b.Spans, spans.Span.Equal)
}

// Protect writes rec, setting its Created time. It is idempotent: when a
// record with rec's ID already protects the same spans at the same time
// for the same job, it succeeds and leaves that record as it is; a
// different record with the ID is ErrAlreadyExists.
//
// A record guards against the GC runs that read the records after Protect
// returns; a run already under way may have chosen its threshold before.
// That is why GC thresholds trail the clock by a TTL, and why a backup
// protects a time no older than its statement.
func (m *Meta) Protect(ctx context.Context, rec ProtectedTimestamp) error {
	if rec.ID == "" {
		return errors.New("protecting timestamp: empty record id")
	}
	if rec.Timestamp.WallTime < 0 {
		return fmt.Errorf("protecting timestamp %s (record %s): invalid timestamp", rec.Timestamp, rec.ID)
	}
	if len(rec.Spans) == 0 {
		return fmt.Errorf("protecting timestamp %s (record %s): no spans", rec.Timestamp, rec.ID)
	}
	for _, s := range rec.Spans {
		if len(s.EndKey) == 0 || bytes.Compare(s.Key, s.EndKey) >= 0 {
			return fmt.Errorf("protecting timestamp %s (record %s): invalid span %s", rec.Timestamp, rec.ID, s)
		}
	}
	rec.Created = time.Now().UTC()
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("protecting timestamp (record %s): %w", rec.ID, err)
	}
	key := protectedTSKey(rec.ID)
	txn, err := m.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("protecting timestamp (record %s): %w", rec.ID, err)
	}
	if txn.Succeeded {
		return nil
	}
	kvs := txn.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		// Released between the compare and the get: protect again.
		return m.Protect(ctx, rec)
	}
	var cur ProtectedTimestamp
	if err := json.Unmarshal(kvs[0].Value, &cur); err != nil {
		return fmt.Errorf("decoding protected timestamp record %s: %w", rec.ID, err)
	}
	if !sameProtection(cur, rec) {
		return fmt.Errorf("protecting timestamp %s (record %s): the record protects %s for job %d: %w",
			rec.Timestamp, rec.ID, cur.Timestamp, cur.JobID, ErrAlreadyExists)
	}
	return nil
}

// Release removes the record id. Releasing a record that does not exist
// succeeds, so callers may release on every path without tracking whether
// they protected.
func (m *Meta) Release(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("releasing protected timestamp: empty record id")
	}
	if _, err := m.cli.Delete(ctx, protectedTSKey(id)); err != nil {
		return fmt.Errorf("releasing protected timestamp %s: %w", id, err)
	}
	return nil
}

// ProtectedTimestamps lists every protection record, by id.
func (m *Meta) ProtectedTimestamps(ctx context.Context) ([]ProtectedTimestamp, error) {
	recs, err := listJSON[ProtectedTimestamp](ctx, m.cli, protectedTSPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing protected timestamps: %w", err)
	}
	return recs, nil
}

// gcThresholds splits span into pieces, in key order, each with the
// highest GC threshold that honours every record: base (now minus the
// TTL), lowered to the Timestamp of each record that covers the piece.
// Pieces a record protects at the zero timestamp get a zero threshold
// (nothing may be removed).
func gcThresholds(span spans.Span, base hlc.Timestamp, recs []ProtectedTimestamp) []gcPiece {
	var bounds [][]byte
	for _, r := range recs {
		for _, s := range r.Spans {
			if s.Overlaps(span) {
				bounds = append(bounds, s.Key, s.EndKey)
			}
		}
	}
	var out []gcPiece
	for _, p := range spans.SplitAt(span, bounds) {
		th := base
		for _, r := range recs {
			if !r.Timestamp.Less(th) {
				continue
			}
			for _, s := range r.Spans {
				if s.Overlaps(p) {
					th = r.Timestamp
					break
				}
			}
		}
		out = append(out, gcPiece{span: p, threshold: th})
	}
	return out
}

type gcPiece struct {
	span      spans.Span
	threshold hlc.Timestamp
}
