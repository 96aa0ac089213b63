package mvcc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync/atomic"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage"
	"github.com/cockroachdb/pebble/v2/sstable"
)

// errAborted is what writes return after an abort.
var errAborted = errors.New("sstable write aborted")

// writable adapts an io.Writer to objstorage.Writable, so that sstables
// stream into w block by block instead of being buffered. Pebble calls
// Write from its own goroutine, one call at a time. Finish and Abort never
// close w: its owner does.
type writable struct {
	w       io.Writer
	n       atomic.Int64
	aborted atomic.Bool
}

var _ objstorage.Writable = (*writable)(nil)

func (w *writable) Write(p []byte) error {
	if w.aborted.Load() {
		return errAborted
	}
	n, err := w.w.Write(p)
	w.n.Add(int64(n))
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return err
}

func (w *writable) Finish() error { return nil }
func (w *writable) Abort()        { w.aborted.Store(true) }

// SSTWriter writes one ingestible sstable of MVCC entries to an io.Writer,
// streaming. Restore uses it to write rewritten copies of backup files. It
// is not safe for concurrent use. Either Close or Abort must be called;
// neither closes the io.Writer.
type SSTWriter struct {
	out     *writable
	w       *sstable.Writer
	key     []byte // the last key added
	scratch []byte
	done    bool
	entries int64
}

// NewSSTWriter returns a writer that streams a table into w.
func NewSSTWriter(w io.Writer) *SSTWriter {
	out := &writable{w: w}
	wo, _ := sharedSSTOptions()
	return &SSTWriter{out: out, w: sstable.NewWriter(out, wo)}
}

// Add appends one entry: userKey's version at ts (non-zero, non-negative
// wall time) with its stored value (EncodeValue's output, or empty for a
// tombstone). Entries must arrive in
// strictly increasing engine order: by user key, then newest version first.
func (w *SSTWriter) Add(userKey []byte, ts hlc.Timestamp, rawValue []byte) error {
	if w.done {
		return errors.New("adding to sstable: writer is closed")
	}
	if ts.IsEmpty() || ts.WallTime < 0 {
		return fmt.Errorf("adding key %q to sstable: invalid timestamp %s", userKey, ts)
	}
	if _, _, err := DecodeValue(rawValue); err != nil {
		return fmt.Errorf("adding key %q to sstable: %w", userKey, err)
	}
	k := appendKey(w.scratch[:0], userKey, ts)
	if w.entries > 0 && compareKeys(w.key, k) >= 0 {
		return fmt.Errorf("adding key %s to sstable: not after previous key %s", keyFormatter(k), keyFormatter(w.key))
	}
	if err := w.w.Set(k, rawValue); err != nil {
		return fmt.Errorf("adding key %q to sstable: %w", userKey, err)
	}
	w.key, w.scratch = k, w.key
	w.entries++
	return nil
}

// EstimatedSize returns about how many bytes the table will have once
// closed.
func (w *SSTWriter) EstimatedSize() uint64 { return w.w.Raw().EstimatedSize() }

// Close finishes the table: after it returns nil, w holds a complete
// sstable (a valid empty one when nothing was added).
func (w *SSTWriter) Close() error {
	if w.done {
		return errors.New("closing sstable: writer is closed")
	}
	w.done = true
	if err := w.w.Close(); err != nil {
		return fmt.Errorf("closing sstable: %w", err)
	}
	return nil
}

// Abort gives up on the table and releases its resources; the io.Writer
// may hold a partial table, which the caller must discard. It is a no-op
// after Close.
func (w *SSTWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.out.Abort()
	_ = w.w.Close() // fails on the aborted writable; joins Pebble's writer goroutine
}

// readable adapts an io.ReaderAt of known size to objstorage.Readable.
type readable struct {
	r    io.ReaderAt
	size int64
	rh   objstorage.NoopReadHandle
	// ioErr is the first error from r other than a short read: a failure to
	// read, as opposed to a damaged file.
	ioErr atomic.Pointer[error]
}

var _ objstorage.Readable = (*readable)(nil)

func newReadable(r io.ReaderAt, size int64) *readable {
	rd := &readable{r: r, size: size}
	rd.rh = objstorage.MakeNoopReadHandle(rd)
	return rd
}

func (r *readable) ReadAt(_ context.Context, p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > r.size {
		return fmt.Errorf("reading %d bytes at offset %d: beyond the file's %d bytes", len(p), off, r.size)
	}
	n, err := r.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("reading %d bytes at offset %d: %w", len(p), off, io.ErrUnexpectedEOF)
	}
	r.ioErr.CompareAndSwap(nil, &err)
	return err
}

// classify wraps an error from Pebble's reader: an I/O error from r as
// itself (the caller may retry), anything else as corruption.
func (r *readable) classify(what string, err error) error {
	if p := r.ioErr.Load(); p != nil {
		return fmt.Errorf("%s: %w", what, *p)
	}
	return fmt.Errorf("%s: %w: %w", what, errCorrupt, err)
}

func (r *readable) Close() error { return nil }
func (r *readable) Size() int64  { return r.size }
func (r *readable) NewReadHandle(objstorage.ReadBeforeSize) objstorage.ReadHandle {
	return &r.rh
}

// errCorrupt wraps every error IterateSST returns about the file's content.
var errCorrupt = errors.New("corrupt sstable")

// IterateSST reads the sstable of size bytes in r and calls fn for each
// entry in engine order. It validates the file as it goes: every block's
// checksum, the comparer, the key and value encodings, the key order, and
// that it holds nothing but versioned point entries. A damaged or foreign
// file returns an error wrapping ErrCorruptSST, never a panic; fn may have
// been called for entries before the damage. An error from r other than a
// short read is returned wrapped, without ErrCorruptSST, so that callers
// can retry it. An error from fn stops the
// iteration and is returned as is. fn must not retain its arguments.
// Memory is bounded by a block and the table's index.
func IterateSST(ctx context.Context, r io.ReaderAt, size int64, fn func(userKey []byte, ts hlc.Timestamp, rawValue []byte) error) (err error) {
	inFn := false
	defer func() {
		if inFn {
			return // a panic in fn is the caller's; let it propagate
		}
		if p := recover(); p != nil {
			err = fmt.Errorf("reading sstable: %w: panic: %v\n%s", errCorrupt, p, debug.Stack())
		}
	}()
	return iterateSST(ctx, r, size, func(uk []byte, ts hlc.Timestamp, v []byte) error {
		inFn = true
		e := fn(uk, ts, v)
		inFn = false
		return e
	})
}

// ErrCorruptSST is wrapped by every error about a damaged or foreign file.
var ErrCorruptSST = errCorrupt

func iterateSST(ctx context.Context, r io.ReaderAt, size int64, fn func([]byte, hlc.Timestamp, []byte) error) error {
	_, ro := sharedSSTOptions()
	rd := newReadable(r, size)
	reader, err := sstable.NewReader(ctx, rd, ro)
	if err != nil {
		return rd.classify("opening sstable", err)
	}
	defer reader.Close()
	props, err := reader.ReadPropertiesBlock(ctx, nil)
	if err != nil {
		return rd.classify("reading sstable properties", err)
	}
	if name := props.ComparerName; name != Comparer.Name {
		return fmt.Errorf("opening sstable: %w: comparer %q, want %q", errCorrupt, name, Comparer.Name)
	}
	if props.NumRangeDeletions > 0 || props.NumRangeKeys() > 0 {
		return fmt.Errorf("opening sstable: %w: holds range deletions or range keys", errCorrupt)
	}
	iter, err := reader.NewIter(sstable.NoTransforms, nil, nil, sstable.AssertNoBlobHandles)
	if err != nil {
		return rd.classify("reading sstable", err)
	}
	defer iter.Close()
	var prev, buf []byte
	var n int64
	for kv := iter.First(); kv != nil; kv = iter.Next() {
		if n++; n%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		key := kv.K.UserKey
		if kv.Kind() != pebble.InternalKeyKindSet {
			return fmt.Errorf("reading sstable at key %s: %w: unexpected kind %s", keyFormatter(key), errCorrupt, kv.Kind())
		}
		uk, ts, err := DecodeKey(key)
		if err != nil {
			return fmt.Errorf("reading sstable: %w: %w", errCorrupt, err)
		}
		if ts.IsEmpty() {
			return fmt.Errorf("reading sstable: %w: unversioned key %q", errCorrupt, uk)
		}
		if prev != nil && compareKeys(prev, key) >= 0 {
			return fmt.Errorf("reading sstable: %w: key %s not after %s", errCorrupt, keyFormatter(key), keyFormatter(prev))
		}
		v, _, err := kv.Value(buf)
		if err != nil {
			return rd.classify(fmt.Sprintf("reading sstable at key %s", keyFormatter(key)), err)
		}
		if _, _, err := DecodeValue(v); err != nil {
			return fmt.Errorf("reading sstable at key %s: %w: %w", keyFormatter(key), errCorrupt, err)
		}
		prev = append(prev[:0], key...)
		if err := fn(prev[:len(uk):len(uk)], ts, v); err != nil {
			return err
		}
	}
	if err := iter.Error(); err != nil {
		return rd.classify("reading sstable", err)
	}
	return nil
}
