package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/sdk/plugin"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/storagerpc"
)

// provider is a storage plugin as the host sees it: its stores outlive
// the plugin's processes.
type provider struct{ p *proc }

var _ storage.Provider = (*provider)(nil)

func (pv *provider) Schemes() []string { return pv.p.info.Schemes }

func (pv *provider) opener(ctx context.Context, u *url.URL) (storage.Store, error) {
	return pv.Open(ctx, u.String())
}

// Open opens uri in the plugin; the store is reopened after a restart.
func (pv *provider) Open(ctx context.Context, uri string) (storage.Store, error) {
	s := &hostStore{p: pv.p, uri: uri, shown: redactedScheme(uri)}
	if err := s.do(ctx, unaryCall, func(ctx context.Context, _ *storagerpc.Store) error { return nil }); err != nil {
		return nil, err
	}
	pv.p.mu.Lock()
	pv.p.stores[s] = struct{}{}
	pv.p.mu.Unlock()
	return s, nil
}

// redactedScheme is how a store is named in logs: the URI may hold
// secrets, and the registry's errors already name it redacted.
func redactedScheme(uri string) string {
	if u, err := url.Parse(uri); err == nil {
		return u.Scheme + "://" + u.Host + u.Path
	}
	return "<unparsable URI>"
}

// hostStore is a store in a plugin that survives the plugin's restarts.
type hostStore struct {
	p     *proc
	uri   string
	shown string

	mu     sync.Mutex
	gen    uint64 // generation inner was opened in
	inner  *storagerpc.Store
	closed bool
}

var _ storage.Store = (*hostStore)(nil)

// get returns the store opened in the current process, opening (or
// reopening, after a restart) it first.
func (s *hostStore) get(ctx context.Context) (*storagerpc.Store, uint64, error) {
	c, gen, err := s.p.current()
	if err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, 0, errors.New("using a closed store")
	}
	if s.inner != nil && s.gen == gen {
		return s.inner, gen, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.p.h.cfg.CallTimeout)
	defer cancel()
	inner, err := c.OpenStore(ctx, s.uri)
	if err != nil {
		return nil, gen, err
	}
	s.inner, s.gen = inner, gen
	return inner, gen, nil
}

// openedIn is the generation of the process the store is open in.
func (s *hostStore) openedIn() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// callKind says how a call is bounded and whether it may be repeated.
type callKind struct {
	deadline   bool // bounded by Config.CallTimeout
	idempotent bool // retried after a retryable error
}

var (
	unaryCall  = callKind{deadline: true, idempotent: true}
	streamCall = callKind{}
	// fileCall is WriteFile: the whole object is in the host's spool, so
	// it can be sent again, and it takes as long as the upload takes.
	fileCall = callKind{idempotent: true}
)

// do runs op on the current store. When the plugin died, it restarts it
// and runs op again; idempotent calls also retry errors the plugin marked
// retryable, with a short backoff.
func (s *hostStore) do(ctx context.Context, kind callKind, op func(ctx context.Context, st *storagerpc.Store) error) error {
	for attempt := 0; ; attempt++ {
		st, gen, err := s.get(ctx)
		if err == nil {
			if kind.deadline {
				cctx, cancel := context.WithTimeout(ctx, s.p.h.cfg.CallTimeout)
				err = op(cctx, st)
				cancel()
			} else {
				err = op(ctx, st)
			}
		}
		if err == nil || attempt >= s.p.h.cfg.MaxRestarts {
			return err
		}
		if err := s.recover(ctx, gen, err, kind.idempotent, attempt); err != nil {
			return err
		}
	}
}

// recover decides whether a failed call is worth another attempt: after
// restarting a dead plugin, or after a backoff for a retryable error of
// an idempotent call. It returns nil to retry, or the error to give up
// with.
func (s *hostStore) recover(ctx context.Context, gen uint64, err error, idempotent bool, attempt int) error {
	if s.p.dead(ctx, err) {
		if rerr := s.p.restart(ctx, gen); rerr != nil {
			return fmt.Errorf("%w (and %v)", err, rerr)
		}
		return nil
	}
	if !idempotent || !storage.IsRetryable(err) || errors.Is(err, context.Canceled) {
		return err
	}
	t := time.NewTimer(time.Duration(50<<attempt) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return err
	case <-t.C:
		return nil
	}
}

func (s *hostStore) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	var info storage.ObjectInfo
	err := s.do(ctx, unaryCall, func(ctx context.Context, st *storagerpc.Store) error {
		var err error
		info, err = st.Stat(ctx, name)
		return err
	})
	return info, err
}

// List restarts from after the last entry delivered when the plugin dies
// mid-listing, so fn sees every entry once.
func (s *hostStore) List(ctx context.Context, opts storage.ListOptions, fn func(storage.ObjectInfo) error) error {
	var fnErr error
	err := s.do(ctx, streamCall, func(ctx context.Context, st *storagerpc.Store) error {
		return st.List(ctx, opts, func(o storage.ObjectInfo) error {
			if err := fn(o); err != nil {
				fnErr = err
				return err
			}
			opts.StartAfter = o.Name
			return nil
		})
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// Read of a whole object from a plugin that can put it in a file (the
// "read-file" capability) asks for it as a file in the host's spool
// directory and reads that: the bytes cross through the page cache (for
// the local store, the file is the object itself, linked), not through
// gRPC, and a plugin crash costs at most the call. Ranged reads, and
// plugins without the capability, stream; a streamed read resumes in a
// restarted plugin at the byte it stopped.
func (s *hostStore) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if offset == 0 && length < 0 && s.p.takesFiles(plugin.CapabilityReadFile) {
		r, err := s.readFile(ctx, name)
		if !errors.Is(err, storage.ErrUnimplemented) {
			return r, err
		}
		s.p.refuseFiles(plugin.CapabilityReadFile, err)
	}
	r := &hostReader{s: s, ctx: ctx, name: name, offset: offset, length: length}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (s *hostStore) Delete(ctx context.Context, name string) error {
	return s.do(ctx, unaryCall, func(ctx context.Context, st *storagerpc.Store) error {
		return st.Delete(ctx, name)
	})
}

// Close releases the store in the plugin; a plugin that is gone has
// nothing left to release.
func (s *hostStore) Close() error {
	s.p.mu.Lock()
	delete(s.p.stores, s)
	s.p.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.inner == nil {
		return nil
	}
	if _, gen, err := s.p.current(); err != nil || gen != s.gen {
		return nil
	}
	err := s.inner.Close()
	if storagerpc.IsConnectionError(err) {
		return nil
	}
	return err
}

// readFile has the plugin put the object into a new spool file, opens it
// and unlinks it: the reader holds the only reference.
func (s *hostStore) readFile(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	tmp, err := os.CreateTemp(s.p.h.spoolDir, "r-*")
	if err != nil {
		return nil, fmt.Errorf("reading %s: making a spool file: %w", name, err)
	}
	path := tmp.Name()
	tmp.Close()
	defer os.Remove(path)
	err = s.do(ctx, fileCall, func(ctx context.Context, st *storagerpc.Store) error {
		// The name must be free: a try cut short by a crash may have
		// left part of a file (and CreateTemp reserved it).
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		_, err := st.GetFile(ctx, name, path)
		return err
	})
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: opening the file the plugin made: %w", name, err)
	}
	return &fileReader{f: f, ctx: ctx, name: name}, nil
}

// fileReader reads a spool file, honouring the read's context.
type fileReader struct {
	f    *os.File
	ctx  context.Context
	name string
}

func (r *fileReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("reading %s: %w", r.name, err)
	}
	return r.f.Read(p)
}

func (r *fileReader) Close() error { return r.f.Close() }

// hostReader resumes a read in a restarted plugin at the byte it stopped.
type hostReader struct {
	s      *hostStore
	ctx    context.Context
	name   string
	offset int64 // of the next byte
	length int64 // left, < 0 for to the end
	gen    uint64
	r      io.ReadCloser
	err    error
}

func (r *hostReader) open() error {
	return r.s.do(r.ctx, streamCall, func(ctx context.Context, st *storagerpc.Store) error {
		rc, err := st.Read(ctx, r.name, r.offset, r.length)
		if err != nil {
			return err
		}
		r.r, r.gen = rc, r.s.openedIn()
		return nil
	})
}

func (r *hostReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for attempt := 0; ; attempt++ {
		n, err := r.r.Read(p)
		r.offset += int64(n)
		if r.length >= 0 {
			r.length -= int64(n)
		}
		if n > 0 || err == nil || err == io.EOF {
			return n, err
		}
		if attempt >= r.s.p.h.cfg.MaxRestarts {
			r.err = err
			return 0, err
		}
		if rerr := r.s.recover(r.ctx, r.gen, err, false, attempt); rerr != nil {
			r.err = rerr
			return 0, rerr
		}
		r.r.Close()
		if err := r.open(); err != nil {
			r.err = err
			return 0, err
		}
	}
}

func (r *hostReader) Close() error {
	if r.err == nil {
		r.err = errors.New("reading a closed reader")
	}
	return r.r.Close()
}

// Write keeps a copy of the bytes in a spool. When the plugin can take a
// file (the "write-file" capability), nothing crosses the socket until
// Close, which hands the spool over whole: small objects inline, larger
// ones as the spool file's path, so the bulk of the bytes moves through
// the page cache instead of being framed, encrypted and copied through
// gRPC. Otherwise the bytes stream as they come, and when the plugin dies
// mid-write the spool is replayed into a fresh stream. Either way a crash
// costs a retry from the host's copy, not the write.
func (s *hostStore) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("writing %s: %w", name, err)
	}
	w := &hostWriter{s: s, ctx: ctx, name: name, opts: opts, spool: &spool{dir: s.p.h.spoolDir}, handoff: s.p.takesFiles(plugin.CapabilityWriteFile)}
	if !w.handoff {
		if err := w.open(); err != nil {
			return nil, err
		}
	}
	return w, nil
}

type hostWriter struct {
	s       *hostStore
	ctx     context.Context
	name    string
	opts    storage.WriteOptions
	spool   *spool
	handoff bool // the bytes go over at Close, as a file
	gen     uint64
	w       storage.Writer // the stream, when not handing off
	done    bool
	err     error
}

// open starts a stream and replays the spooled bytes into it.
func (w *hostWriter) open() error {
	return w.s.do(w.ctx, streamCall, func(ctx context.Context, st *storagerpc.Store) error {
		inner, err := st.Write(ctx, w.name, w.opts)
		if err != nil {
			return err
		}
		if err := w.spool.replay(inner); err != nil {
			inner.Abort()
			return err
		}
		w.w, w.gen = inner, w.s.openedIn()
		return nil
	})
}

// retry runs op on the current stream, moving to a fresh one (with the
// spool replayed) when the plugin died.
func (w *hostWriter) retry(op func(storage.Writer) error) error {
	for attempt := 0; ; attempt++ {
		err := op(w.w)
		if err == nil {
			return nil
		}
		if attempt >= w.s.p.h.cfg.MaxRestarts {
			return err
		}
		if rerr := w.s.recover(w.ctx, w.gen, err, false, attempt); rerr != nil {
			return rerr
		}
		w.w.Abort()
		if err := w.open(); err != nil {
			return err
		}
	}
}

func (w *hostWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("writing to a closed writer")
	}
	if w.err != nil {
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		w.err = fmt.Errorf("writing %s: %w", w.name, err)
		return 0, w.err
	}
	if err := w.spool.write(p); err != nil {
		w.err = err
		return 0, err
	}
	if w.handoff {
		return len(p), nil
	}
	// p is spooled: once the stream is replaced after a failure, the
	// replay has carried it.
	failed := false
	err := w.retry(func(inner storage.Writer) error {
		if failed {
			return nil
		}
		_, err := inner.Write(p)
		failed = err != nil
		return err
	})
	if err != nil {
		w.err = err
		return 0, err
	}
	return len(p), nil
}

func (w *hostWriter) Close() error {
	if w.done {
		return w.err
	}
	w.done = true
	defer w.spool.close()
	if w.handoff {
		if w.err == nil {
			w.err = w.putFile()
		}
		return w.err
	}
	if w.err != nil {
		w.w.Abort()
		return w.err
	}
	w.err = w.retry(func(inner storage.Writer) error { return inner.Close() })
	return w.err
}

// putFile hands the spool to the plugin in one WriteFile call, retried
// (from the same file) after a plugin restart or a retryable error. A
// plugin that cannot take the file gets the bytes streamed, and is not
// offered files again.
func (w *hostWriter) putFile() error {
	if err := w.ctx.Err(); err != nil {
		return fmt.Errorf("committing %s: %w", w.name, err)
	}
	fw := storagerpc.FileWrite{Name: w.name, Size: w.spool.size, Opts: w.opts}
	crc := w.spool.crc
	fw.CRC32C = &crc
	if w.spool.f != nil {
		fw.Path = w.spool.f.Name()
	} else {
		fw.Data = w.spool.mem
		if fw.Data == nil {
			fw.Data = []byte{}
		}
	}
	tries := 0
	err := w.s.do(w.ctx, fileCall, func(ctx context.Context, st *storagerpc.Store) error {
		tries++
		return st.PutFile(ctx, fw)
	})
	if tries > 1 && w.opts.IfNotExists && errors.Is(err, storage.ErrAlreadyExists) && w.isOurs() {
		// The plugin committed an earlier try and died before it
		// answered: the object there is the one we wrote (or one with
		// the very same bytes, which no reader can tell from it).
		return nil
	}
	if !errors.Is(err, storage.ErrUnimplemented) {
		return err
	}
	w.s.p.refuseFiles(plugin.CapabilityWriteFile, err)
	w.handoff = false
	if err := w.open(); err != nil {
		return err
	}
	return w.retry(func(inner storage.Writer) error { return inner.Close() })
}

// isOurs reports whether the object now under the writer's name holds
// exactly the spooled bytes (size and CRC-32C).
func (w *hostWriter) isOurs() bool {
	info, err := w.s.Stat(w.ctx, w.name)
	if err != nil || info.Size != w.spool.size {
		return false
	}
	r, err := w.s.Read(w.ctx, w.name, 0, -1)
	if err != nil {
		return false
	}
	defer r.Close()
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, r)
	return err == nil && n == w.spool.size && h.Sum32() == w.spool.crc
}

func (w *hostWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	defer w.spool.close()
	if w.w == nil {
		return nil
	}
	return w.w.Abort()
}

// spoolMem is how much of a write the spool keeps in memory before it
// moves to a file: small objects (manifests, checkpoints) never touch
// the disk.
const spoolMem = 1 << 20

// spool is the host's copy of a write in flight, in memory up to spoolMem
// and then in a file of the host's spool directory, with the CRC-32C of
// its bytes.
type spool struct {
	dir  string
	mem  []byte
	f    *os.File
	size int64
	crc  uint32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// spoolBufs recycles the in-memory part of spools: a backup writes many
// files of a few MiB, and growing a fresh buffer for each costs more
// than writing the file.
var spoolBufs = sync.Pool{New: func() any { b := make([]byte, 0, spoolMem); return &b }}

func (sp *spool) write(p []byte) error {
	sp.crc = crc32.Update(sp.crc, castagnoli, p)
	if sp.f == nil && len(sp.mem)+len(p) <= spoolMem {
		if sp.mem == nil {
			sp.mem = (*spoolBufs.Get().(*[]byte))[:0]
		}
		sp.mem = append(sp.mem, p...)
		sp.size += int64(len(p))
		return nil
	}
	if sp.f == nil {
		f, err := os.CreateTemp(sp.dir, "w-*")
		if err != nil {
			return fmt.Errorf("spooling a write: %w", err)
		}
		sp.f = f
		if _, err := f.Write(sp.mem); err != nil {
			return fmt.Errorf("spooling a write: %w", err)
		}
		sp.release()
	}
	if _, err := sp.f.Write(p); err != nil {
		return fmt.Errorf("spooling a write: %w", err)
	}
	sp.size += int64(len(p))
	return nil
}

// replay writes every spooled byte to w.
func (sp *spool) replay(w io.Writer) error {
	if sp.size == 0 {
		return nil
	}
	if sp.f == nil {
		_, err := w.Write(sp.mem)
		return err
	}
	buf := make([]byte, storagerpc.ChunkSize)
	_, err := io.CopyBuffer(w, io.NewSectionReader(sp.f, 0, sp.size), buf)
	return err
}

// close removes the spool's file. A plugin that took the file by a link
// keeps its own name for it.
func (sp *spool) close() {
	if sp.f != nil {
		sp.f.Close()
		os.Remove(sp.f.Name())
		sp.f = nil
	}
	sp.release()
}

// release gives the in-memory buffer back to the pool.
func (sp *spool) release() {
	if sp.mem != nil {
		b := sp.mem[:0]
		spoolBufs.Put(&b)
		sp.mem = nil
	}
}
