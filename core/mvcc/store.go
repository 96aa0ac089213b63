package mvcc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/spans"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
)

// formatVersion pins the on-disk format of stores, and through
// formatVersion.MaxTableFormat() the table format of every sstable this
// package writes, so that exported files can be ingested into any store.
const formatVersion = pebble.FormatValueSeparation

// Options configures a Store. The defaults are small on purpose: a demo
// runs several stores in one process.
type Options struct {
	// CacheSize is the block cache size in bytes; default 8 MiB.
	CacheSize int64
	// MemTableSize is the size of one memtable in bytes; default 4 MiB.
	MemTableSize uint64
	// Logger receives Pebble's log lines; default slog.Default().
	Logger *slog.Logger

	// disableCompactions keeps flushed sstables as they are, so that tests
	// can reason about file layout.
	disableCompactions bool
}

const (
	defaultCacheSize    = 8 << 20
	defaultMemTableSize = 4 << 20
)

// Store is a node's MVCC key-value store: one Pebble DB holding every
// replica the node has. It is safe for concurrent use.
type Store struct {
	db     *pebble.DB
	logger *slog.Logger

	// filterRejected counts the blocks and tables that Export's time filter
	// skipped, over the store's lifetime.
	filterRejected atomic.Int64
	// pointsRead counts the point entries Export's iterators read from
	// sstables (Pebble's iterator stats), over the store's lifetime.
	pointsRead atomic.Int64
}

// basePebbleOptions returns the options every store and every sstable
// writer/reader in this package shares: comparer, key schema, block
// property collectors and format. They are what makes an exported file
// ingestible.
func basePebbleOptions() *pebble.Options {
	o := &pebble.Options{
		Comparer:                Comparer,
		FormatMajorVersion:      formatVersion,
		BlockPropertyCollectors: []func() pebble.BlockPropertyCollector{newTimeIntervalCollector},
	}
	o.EnsureDefaults()
	return o
}

// sharedSSTOptions holds the writer and reader options for standalone
// sstables (SSTWriter, Export, IterateSST).
var sharedSSTOptions = sync.OnceValues(func() (sstable.WriterOptions, sstable.ReaderOptions) {
	o := basePebbleOptions()
	return o.MakeWriterOptions(0, formatVersion.MaxTableFormat()), o.MakeReaderOptions()
})

// Open opens (creating if needed) the store in dir. The caller must Close it.
func Open(dir string, opts Options) (*Store, error) {
	if opts.CacheSize <= 0 {
		opts.CacheSize = defaultCacheSize
	}
	if opts.MemTableSize == 0 {
		opts.MemTableSize = defaultMemTableSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	po := basePebbleOptions()
	po.MemTableSize = opts.MemTableSize
	po.Logger = pebbleLogger{opts.Logger}
	po.DisableAutomaticCompactions = opts.disableCompactions
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref() // the DB holds its own reference
	po.Cache = cache
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", dir, err)
	}
	return &Store{db: db, logger: opts.Logger}, nil
}

// Close closes the store. No call may follow or run concurrently with it.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing store: %w", err)
	}
	return nil
}

// Op is one write: a version of Key at TS holding Value, or a tombstone
// when Delete is set (Value is then ignored).
type Op struct {
	Key    []byte
	TS     hlc.Timestamp
	Value  []byte
	Delete bool
}

// Apply writes ops as one atomic Pebble batch; with sync, it returns after
// the batch is durable. Every op needs a non-zero timestamp with a
// non-negative wall time. Writing a version that already exists replaces it.
func (s *Store) Apply(ops []Op, sync bool) error {
	b := s.db.NewBatch()
	defer b.Close()
	for i, op := range ops {
		if op.TS.IsEmpty() || op.TS.WallTime < 0 {
			return fmt.Errorf("applying op %d (key %q): invalid timestamp %s", i, op.Key, op.TS)
		}
		var v []byte
		if !op.Delete {
			v = EncodeValue(op.Value)
		}
		if err := b.Set(EncodeKey(op.Key, op.TS), v, nil); err != nil {
			return fmt.Errorf("applying op %d (key %q): %w", i, op.Key, err)
		}
	}
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
	}
	if err := b.Commit(wo); err != nil {
		return fmt.Errorf("committing %d ops: %w", len(ops), err)
	}
	return nil
}

// Get returns the value of the newest version of key at or below ts.
// found is false when there is none or it is a tombstone. The value is a
// copy the caller owns.
func (s *Store) Get(key []byte, ts hlc.Timestamp) (value []byte, found bool, err error) {
	if ts.IsEmpty() || ts.WallTime < 0 {
		return nil, false, nil // no version is at or below such a time
	}
	iter, err := s.db.NewIter(nil)
	if err != nil {
		return nil, false, fmt.Errorf("getting key %q: %w", key, err)
	}
	defer iter.Close()
	for valid := iter.SeekPrefixGE(EncodeKey(key, ts)); valid; valid = iter.Next() {
		_, vts, err := DecodeKey(iter.Key())
		if err != nil {
			return nil, false, fmt.Errorf("getting key %q: %w", key, err)
		}
		if vts.IsEmpty() {
			continue // unversioned keys are not part of the MVCC history
		}
		raw, err := iter.ValueAndErr()
		if err != nil {
			return nil, false, fmt.Errorf("getting key %q: %w", key, err)
		}
		v, tomb, err := DecodeValue(raw)
		if err != nil || tomb {
			return nil, false, err
		}
		return append([]byte{}, v...), true, nil
	}
	if err := iter.Error(); err != nil {
		return nil, false, fmt.Errorf("getting key %q: %w", key, err)
	}
	return nil, false, nil
}

// spanBounds returns the engine-key bounds [lower, upper) covering every
// version of every user key in span. An empty EndKey means just span.Key.
func spanBounds(span spans.Span) (lower, upper []byte) {
	lower = EncodeKey(span.Key, hlc.Timestamp{})
	if len(span.EndKey) == 0 {
		return lower, EncodeKey(append(append([]byte{}, span.Key...), 0), hlc.Timestamp{})
	}
	return lower, EncodeKey(span.EndKey, hlc.Timestamp{})
}

// ctxCheckEvery is how many iterator steps pass between context checks.
const ctxCheckEvery = 256

// Scan calls fn for each user key in span whose newest version at or below
// ts is not a tombstone, in key order, with that version's value. fn must
// not retain key or value. The scan reads one consistent snapshot. An error from fn stops the scan and is returned
// as is; a cancelled ctx stops it with ctx's error.
func (s *Store) Scan(ctx context.Context, span spans.Span, ts hlc.Timestamp, fn func(key, value []byte) error) error {
	if !span.Valid() {
		return fmt.Errorf("scanning span %s: invalid span", span)
	}
	if ts.WallTime < 0 {
		return fmt.Errorf("scanning span %s: invalid timestamp %s", span, ts)
	}
	if ts.IsEmpty() {
		return nil // every version is above the zero time
	}
	lower, upper := spanBounds(span)
	iter, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("scanning span %s: %w", span, err)
	}
	defer iter.Close()
	steps := 0
	for valid := iter.First(); valid; {
		if steps++; steps%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		uk, vts, err := DecodeKey(iter.Key())
		if err != nil {
			return fmt.Errorf("scanning span %s: %w", span, err)
		}
		if vts.IsEmpty() {
			valid = iter.Next()
			continue
		}
		if ts.Less(vts) {
			valid = iter.SeekGE(EncodeKey(uk, ts))
			continue
		}
		raw, err := iter.ValueAndErr()
		if err != nil {
			return fmt.Errorf("scanning span %s: %w", span, err)
		}
		v, tomb, err := DecodeValue(raw)
		if err != nil {
			return fmt.Errorf("scanning span %s at key %q: %w", span, uk, err)
		}
		if !tomb {
			if err := fn(uk, v); err != nil {
				return err
			}
		}
		valid = iter.NextPrefix()
	}
	if err := iter.Error(); err != nil {
		return fmt.Errorf("scanning span %s: %w", span, err)
	}
	return nil
}

// Ingest atomically adds the sstables at paths to the store, as if their
// entries were one batch written now. The files must have been written by
// this package (SSTWriter, or Export's output saved to a file), must not
// overlap each other, must lie on the store's filesystem, and must have
// been fsynced by the caller. They are hard-linked (or copied) in; on
// success the paths are removed. Ingested versions replace identical
// versions already in the store.
func (s *Store) Ingest(ctx context.Context, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	if err := s.db.Ingest(ctx, paths); err != nil {
		return fmt.Errorf("ingesting %d files: %w", len(paths), err)
	}
	return nil
}

// ClearSpan deletes every version of every key in span (a range deletion,
// synced). A failed restore uses it to remove what it ingested.
func (s *Store) ClearSpan(span spans.Span) error {
	if !span.Valid() {
		return fmt.Errorf("clearing span %s: invalid span", span)
	}
	lower, upper := spanBounds(span)
	if err := s.db.DeleteRange(lower, upper, pebble.Sync); err != nil {
		return fmt.Errorf("clearing span %s: %w", span, err)
	}
	return nil
}

// Flush writes the memtables to sstables and waits for it.
func (s *Store) Flush() error {
	if err := s.db.Flush(); err != nil {
		return fmt.Errorf("flushing store: %w", err)
	}
	return nil
}

// Metrics returns Pebble's multi-line metrics table.
func (s *Store) Metrics() string { return s.db.Metrics().String() }

// DiskUsage returns the bytes the store uses on disk.
func (s *Store) DiskUsage() (int64, error) {
	return int64(s.db.Metrics().DiskSpaceUsage()), nil
}

// pebbleLogger routes Pebble's logs to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Info(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf logs and panics: Pebble calls it only on an unrecoverable
// invariant violation and expects it not to return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble", "fatal", true)
	panic(errors.New(msg))
}
