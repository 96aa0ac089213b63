package mvcc

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/spans"
	"github.com/cockroachdb/pebble/v2"
)

// ExportOptions selects the MVCC entries Export writes.
type ExportOptions struct {
	// Span is the user-key span to export. An empty EndKey means just Key.
	Span spans.Span
	// StartTS is the exclusive lower bound of the time range; zero means
	// from the beginning. StartTS == EndTS selects nothing.
	StartTS hlc.Timestamp
	// EndTS is the inclusive upper bound of the time range; required.
	EndTS hlc.Timestamp
	// AllRevisions selects every version (values and tombstones) with
	// StartTS < ts <= EndTS. Without it, each key contributes at most its
	// newest version <= EndTS, and only if that version's ts > StartTS;
	// such a tombstone is omitted when StartTS is zero (a full backup has
	// nothing to delete) and exported when StartTS is set (an incremental
	// layer must record the deletion).
	AllRevisions bool
	// TargetSize, when positive, ends the file once it has reached about
	// this many bytes, at a user-key boundary: one key's versions are never
	// split across files. The file may overshoot by one key's versions and
	// a block.
	TargetSize int64
}

// ExportSummary describes the file Export wrote.
type ExportSummary struct {
	// Entries is the number of MVCC entries (versions and tombstones).
	Entries int64
	// LogicalBytes is the sum over entries of the engine key's length and
	// the stored value's length.
	LogicalBytes int64
	// FirstKey and LastKey are the first and last user keys in the file.
	FirstKey, LastKey []byte
	// ResumeKey is nil when the span has been exported completely; else
	// the user key where the next Export of the same span should start
	// (set ExportOptions.Span.Key to it).
	ResumeKey []byte
	// MinTS and MaxTS bound the timestamps of the entries.
	MinTS, MaxTS hlc.Timestamp
	// FileBytes is the number of bytes written to w.
	FileBytes int64
}

// Export writes one sstable holding the MVCC entries opts selects, in
// engine order, to w, and returns its summary. The table has the store's
// format, comparer and block properties, so it can be ingested (after a
// copy to a file) into any store.
//
// Export streams: memory is bounded by a block and the table's index, not
// by the file's size. Each call reads its own consistent snapshot of the
// store (a resumed export sees writes made between calls; the cluster's
// closed timestamp keeps those above EndTS). It skips data blocks and whole sstables whose versions all lie outside
// (StartTS, EndTS], using the time-interval block property.
//
// When the selection is empty, Export writes nothing to w and returns a
// summary with Entries == 0 and a nil ResumeKey: callers must not store a
// file in that case. On error (including ctx cancellation, which returns
// ctx's error) w may hold part of a table, which the caller must discard.
// Export never closes w.
func (s *Store) Export(ctx context.Context, opts ExportOptions, w io.Writer) (ExportSummary, error) {
	sum, err := s.export(ctx, opts, w)
	if err != nil {
		if ctx.Err() != nil && err == ctx.Err() {
			return ExportSummary{}, err
		}
		return ExportSummary{}, fmt.Errorf("exporting span %s: %w", opts.Span, err)
	}
	return sum, nil
}

func (s *Store) export(ctx context.Context, opts ExportOptions, w io.Writer) (ExportSummary, error) {
	var sum ExportSummary
	switch {
	case !opts.Span.Valid():
		return sum, fmt.Errorf("invalid span")
	case opts.EndTS.IsEmpty() || opts.EndTS.WallTime < 0:
		return sum, fmt.Errorf("invalid end time %s", opts.EndTS)
	case opts.StartTS.WallTime < 0 || opts.EndTS.Less(opts.StartTS):
		return sum, fmt.Errorf("start time %s after end time %s", opts.StartTS, opts.EndTS)
	case opts.StartTS == opts.EndTS:
		return sum, nil // (t, t] is empty
	}
	if err := ctx.Err(); err != nil {
		return sum, err
	}
	lower, upper := spanBounds(opts.Span)
	filters := make([]pebble.BlockPropertyFilter, 1, 2)
	filters[0] = newTimeFilter(opts.StartTS, opts.EndTS, &s.filterRejected)
	iter, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound:      lower,
		UpperBound:      upper,
		PointKeyFilters: filters,
	})
	if err != nil {
		return sum, err
	}
	defer func() {
		s.pointsRead.Add(int64(iter.Stats().InternalStats.PointCount))
		_ = iter.Close() // only repeats an error Export already saw
	}()

	var sst *SSTWriter // created on the first entry, so an empty export writes nothing
	defer func() {
		if sst != nil {
			sst.Abort() // no-op after Close
		}
	}()
	incremental := !opts.StartTS.IsEmpty()
	var lastUK []byte // user key of the last entry written
	steps := 0

	// emit writes the entry at the iterator. It reports false when the file
	// is full and uk must start the next one.
	emit := func(uk []byte, ts hlc.Timestamp, raw []byte) (bool, error) {
		if sst == nil {
			sst = NewSSTWriter(w)
		}
		newKey := sum.Entries == 0 || !bytes.Equal(uk, lastUK)
		if newKey && sum.Entries > 0 && opts.TargetSize > 0 && sst.EstimatedSize() >= uint64(opts.TargetSize) {
			return false, nil
		}
		if err := sst.Add(uk, ts, raw); err != nil {
			return false, err
		}
		if newKey {
			lastUK = append(lastUK[:0], uk...)
			if sum.FirstKey == nil {
				sum.FirstKey = append([]byte{}, uk...)
			}
		}
		if sum.Entries == 0 || ts.Less(sum.MinTS) {
			sum.MinTS = ts
		}
		if sum.Entries == 0 || sum.MaxTS.Less(ts) {
			sum.MaxTS = ts
		}
		sum.Entries++
		sum.LogicalBytes += int64(len(uk)+versionedLen) + int64(len(raw))
		return true, nil
	}

	for valid := iter.First(); valid; {
		if steps++; steps%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return ExportSummary{}, err
			}
		}
		uk, ts, err := DecodeKey(iter.Key())
		if err != nil {
			return sum, err
		}
		switch {
		case ts.IsEmpty():
			// Unversioned keys are not part of the MVCC history.
			valid = iter.Next()
			continue
		case opts.EndTS.Less(ts):
			// Newer than the export: jump to the newest version <= EndTS.
			valid = iter.SeekGE(EncodeKey(uk, opts.EndTS))
			continue
		case !opts.StartTS.Less(ts):
			// At or below StartTS: so is every older version of this key.
			valid = iter.NextPrefix()
			continue
		}
		raw, err := iter.ValueAndErr()
		if err != nil {
			return sum, err
		}
		if !opts.AllRevisions && !incremental && len(raw) == 0 {
			// A full latest-only export omits keys deleted as of EndTS.
			valid = iter.NextPrefix()
			continue
		}
		ok, err := emit(uk, ts, raw)
		if err != nil {
			return sum, err
		}
		if !ok {
			sum.ResumeKey = append([]byte{}, uk...)
			break
		}
		if opts.AllRevisions {
			valid = iter.Next()
		} else {
			valid = iter.NextPrefix()
		}
	}
	if err := iter.Error(); err != nil {
		return sum, err
	}
	if err := ctx.Err(); err != nil {
		return ExportSummary{}, err
	}
	if sst == nil || sum.Entries == 0 {
		return ExportSummary{}, nil
	}
	if err := sst.Close(); err != nil {
		return sum, err
	}
	sum.LastKey = append([]byte{}, lastUK...)
	sum.FileBytes = sst.out.n.Load()
	return sum, nil
}
