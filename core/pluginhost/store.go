package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sync"
	"time"

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
	if err := s.do(ctx, true, func(ctx context.Context, _ *storagerpc.Store) error { return nil }); err != nil {
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

// do runs op on the current store. When the plugin died, it restarts it
// and runs op again; unary (idempotent) calls also retry errors the
// plugin marked retryable, with a short backoff. op runs under a
// CallTimeout deadline when unary.
func (s *hostStore) do(ctx context.Context, unary bool, op func(ctx context.Context, st *storagerpc.Store) error) error {
	for attempt := 0; ; attempt++ {
		st, gen, err := s.get(ctx)
		if err == nil {
			if unary {
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
		if err := s.recover(ctx, gen, err, unary, attempt); err != nil {
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
	err := s.do(ctx, true, func(ctx context.Context, st *storagerpc.Store) error {
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
	err := s.do(ctx, false, func(ctx context.Context, st *storagerpc.Store) error {
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

func (s *hostStore) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	r := &hostReader{s: s, ctx: ctx, name: name, offset: offset, length: length}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (s *hostStore) Delete(ctx context.Context, name string) error {
	return s.do(ctx, true, func(ctx context.Context, st *storagerpc.Store) error {
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
	return r.s.do(r.ctx, false, func(ctx context.Context, st *storagerpc.Store) error {
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

// Write keeps a copy of the bytes in a spool so that, when the plugin
// dies mid-write, the write is replayed into a fresh stream.
func (s *hostStore) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	w := &hostWriter{s: s, ctx: ctx, name: name, opts: opts, spool: &spool{dir: s.p.h.cfg.SpoolDir}}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

type hostWriter struct {
	s     *hostStore
	ctx   context.Context
	name  string
	opts  storage.WriteOptions
	spool *spool
	gen   uint64
	w     storage.Writer
	done  bool
	err   error
}

// open starts a stream and replays the spooled bytes into it.
func (w *hostWriter) open() error {
	return w.s.do(w.ctx, false, func(ctx context.Context, st *storagerpc.Store) error {
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
	if err := w.spool.write(p); err != nil {
		w.err = err
		return 0, err
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
	if w.err != nil {
		w.w.Abort()
		return w.err
	}
	w.err = w.retry(func(inner storage.Writer) error { return inner.Close() })
	return w.err
}

func (w *hostWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	defer w.spool.close()
	return w.w.Abort()
}

// spoolMem is how much of a write the spool keeps in memory before it
// moves to a file: small objects (manifests, checkpoints) never touch
// the disk twice.
const spoolMem = 1 << 20

// spool is the host's copy of a write in flight.
type spool struct {
	dir  string
	mem  []byte
	f    *os.File
	size int64
}

func (sp *spool) write(p []byte) error {
	if sp.f == nil && len(sp.mem)+len(p) <= spoolMem {
		sp.mem = append(sp.mem, p...)
		sp.size += int64(len(p))
		return nil
	}
	if sp.f == nil {
		f, err := os.CreateTemp(sp.dir, "cairn-spool-*")
		if err != nil {
			return fmt.Errorf("spooling a write: %w", err)
		}
		// Unlinked at once: the file goes away with the process.
		os.Remove(f.Name())
		sp.f = f
		if _, err := f.Write(sp.mem); err != nil {
			return fmt.Errorf("spooling a write: %w", err)
		}
		sp.mem = nil
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

func (sp *spool) close() {
	if sp.f != nil {
		sp.f.Close()
		sp.f = nil
	}
	sp.mem = nil
}
