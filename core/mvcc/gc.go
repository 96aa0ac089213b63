package mvcc

import (
	"context"
	"fmt"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/spans"
	"github.com/cockroachdb/pebble/v2"
)

// GCStats counts what one GC call saw and removed.
type GCStats struct {
	// Keys is the number of user keys that have a version at or below the
	// threshold.
	Keys int64
	// Versions is the number of versions at or below the threshold that GC
	// looked at (versions above it are skipped unread).
	Versions int64
	// Deleted is the number of versions removed; DeletedTombstones of them
	// were tombstones.
	Deleted, DeletedTombstones int64
	// DeletedBytes is the sum over removed versions of the engine key's
	// length and the stored value's length.
	DeletedBytes int64
}

// Add returns the sum of s and o.
func (s GCStats) Add(o GCStats) GCStats {
	return GCStats{
		Keys: s.Keys + o.Keys, Versions: s.Versions + o.Versions,
		Deleted: s.Deleted + o.Deleted, DeletedTombstones: s.DeletedTombstones + o.DeletedTombstones,
		DeletedBytes: s.DeletedBytes + o.DeletedBytes,
	}
}

// gcBatchBytes bounds the size of one batch of GC deletions; GC commits and
// starts a new batch when a batch reaches it, so memory does not grow with
// the span. A variable so that tests can make batches tiny.
var gcBatchBytes = 1 << 20

// GC removes the versions of keys in span that no read at a timestamp at
// or above threshold can see. For each user key it keeps every version
// newer than threshold and the newest version at or below it, unless that
// version is a tombstone, which is removed too (a read at or above
// threshold sees the key as absent either way); every older version is
// removed. Unversioned keys are left alone. A zero threshold removes
// nothing.
//
// Afterwards, reads at timestamps at or above threshold return what they
// returned before; reads below it may not, and nothing stops them: callers
// (the cluster's GC runner) must choose a threshold no reader still needs,
// which is what protected timestamps are for.
//
// GC reads one snapshot and deletes in batches of bounded size, committed
// without sync as it goes: a cancelled or failed GC leaves a consistent
// store with part of the garbage removed, and a later GC finishes the job.
// A version written concurrently with GC is never removed by it unless GC
// saw it.
func (s *Store) GC(ctx context.Context, span spans.Span, threshold hlc.Timestamp) (GCStats, error) {
	stats, err := s.gc(ctx, span, threshold)
	if err != nil {
		if ctx.Err() != nil && err == ctx.Err() {
			return stats, err
		}
		return stats, fmt.Errorf("collecting garbage in span %s below %s: %w", span, threshold, err)
	}
	return stats, nil
}

func (s *Store) gc(ctx context.Context, span spans.Span, threshold hlc.Timestamp) (GCStats, error) {
	var stats GCStats
	switch {
	case !span.Valid():
		return stats, fmt.Errorf("invalid span")
	case threshold.WallTime < 0:
		return stats, fmt.Errorf("invalid threshold")
	case threshold.IsEmpty():
		return stats, nil
	}
	if err := ctx.Err(); err != nil {
		return stats, err
	}
	lower, upper := spanBounds(span)
	iter, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return stats, err
	}
	defer iter.Close()

	b := s.db.NewBatch()
	defer func() { b.Close() }()
	// pending counts what b holds, so stats only ever report committed
	// deletions.
	var pending GCStats
	commit := func() error {
		if !b.Empty() {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			b.Close()
			b = s.db.NewBatch()
		}
		stats = stats.Add(pending)
		pending = GCStats{}
		return nil
	}

	var lastKey []byte // user key of the newest version <= threshold seen
	haveKey := false
	steps := 0
	for valid := iter.First(); valid; {
		if steps++; steps%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return stats, err
			}
		}
		uk, vts, err := DecodeKey(iter.Key())
		if err != nil {
			return stats, err
		}
		switch {
		case vts.IsEmpty():
			valid = iter.Next()
			continue
		case threshold.Less(vts):
			// Newer than the threshold: jump to the newest version <= it.
			valid = iter.SeekGE(EncodeKey(uk, threshold))
			continue
		}
		raw, err := iter.ValueAndErr()
		if err != nil {
			return stats, err
		}
		pending.Versions++
		// The first version of a key at or below threshold is the one reads
		// at threshold see; all later ones (older) are garbage.
		newest := !haveKey || string(lastKey) != string(uk)
		if newest {
			lastKey, haveKey = append(lastKey[:0], uk...), true
			pending.Keys++
		}
		if !newest || len(raw) == 0 {
			if err := b.Delete(iter.Key(), nil); err != nil {
				return stats, err
			}
			pending.Deleted++
			if len(raw) == 0 {
				pending.DeletedTombstones++
			}
			pending.DeletedBytes += int64(len(iter.Key()) + len(raw))
			if b.Len() >= gcBatchBytes {
				if err := commit(); err != nil {
					return stats, err
				}
			}
		}
		valid = iter.Next()
	}
	if err := iter.Error(); err != nil {
		return stats, err
	}
	if err := commit(); err != nil {
		return stats, err
	}
	return stats, nil
}
