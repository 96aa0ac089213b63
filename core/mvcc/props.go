package mvcc

import (
	"math"
	"sync/atomic"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
)

// timeIntervalProp names the block property that records, for every data
// block, index block and table, the interval [min wall, max wall + 1) of
// the MVCC versions it holds. Unversioned keys contribute nothing. The name
// is stored in each sstable; changing it makes old files unfilterable (never
// wrong: a filter whose property is missing reads everything).
const timeIntervalProp = "cairn.mvcc.time-interval"

// wallMapper maps a key to the interval of its version's wall time.
type wallMapper struct{}

var _ sstable.IntervalMapper = wallMapper{}

func (wallMapper) MapPointKey(key sstable.InternalKey, _ []byte) (sstable.BlockInterval, error) {
	return intervalOfSuffix(key.UserKey[split(key.UserKey):]), nil
}

func (wallMapper) MapRangeKeys(sstable.Span) (sstable.BlockInterval, error) {
	return sstable.BlockInterval{}, nil
}

// ApplySuffixReplacement implements sstable.BlockIntervalSuffixReplacer: a
// block whose keys all received newSuffix spans exactly that version.
func (wallMapper) ApplySuffixReplacement(_ sstable.BlockInterval, newSuffix []byte) (sstable.BlockInterval, error) {
	return intervalOfSuffix(newSuffix), nil
}

func intervalOfSuffix(suffix []byte) sstable.BlockInterval {
	if len(suffix) != suffixLen {
		return sstable.BlockInterval{}
	}
	wall := uint64(decodeTS(suffix).WallTime)
	if wall == math.MaxUint64 {
		return sstable.BlockInterval{Lower: wall - 1, Upper: wall}
	}
	return sstable.BlockInterval{Lower: wall, Upper: wall + 1}
}

// newTimeIntervalCollector is registered on every store and sstable writer.
func newTimeIntervalCollector() pebble.BlockPropertyCollector {
	return sstable.NewBlockIntervalCollector(timeIntervalProp, wallMapper{}, wallMapper{})
}

// timeFilter is a block-property filter that keeps only blocks that may
// hold a version with start < ts <= end (start zero: from the beginning).
// The property has wall-time granularity, so the filter is conservative:
// a kept block may still hold versions outside the range, and readers must
// check each timestamp. It counts the blocks and tables it rejects.
type timeFilter struct {
	*sstable.BlockIntervalFilter
	rejected *atomic.Int64
}

func newTimeFilter(start, end hlc.Timestamp, rejected *atomic.Int64) *timeFilter {
	// A version > start has wall >= start.WallTime; one <= end has wall <= end.WallTime.
	lower := uint64(max(start.WallTime, 0))
	upper := uint64(end.WallTime) + 1
	if end.WallTime == math.MaxInt64 {
		upper = uint64(math.MaxInt64) + 1
	}
	return &timeFilter{
		BlockIntervalFilter: sstable.NewBlockIntervalFilter(timeIntervalProp, lower, upper, wallMapper{}),
		rejected:            rejected,
	}
}

func (f *timeFilter) Intersects(prop []byte) (bool, error) {
	ok, err := f.BlockIntervalFilter.Intersects(prop)
	if err == nil && !ok && f.rejected != nil {
		f.rejected.Add(1)
	}
	return ok, err
}

func (f *timeFilter) SyntheticSuffixIntersects(prop []byte, suffix []byte) (bool, error) {
	ok, err := f.BlockIntervalFilter.SyntheticSuffixIntersects(prop, suffix)
	if err == nil && !ok && f.rejected != nil {
		f.rejected.Add(1)
	}
	return ok, err
}
