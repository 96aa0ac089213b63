package collection

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// fakeStore is an in-memory storage.Store for tests: linearizable, objects
// visible only after Close (commits records the order), lexical listings. failRead, when set, is
// consulted before every Read. Its List does not hold the lock while
// calling fn, so fn may call back into the store.
type fakeStore struct {
	mu       sync.Mutex
	objs     map[string][]byte
	reads    []string
	commits  []string
	failRead func(name string) error
	// beforeList, when set, runs before every List, outside the lock.
	beforeList func(opts storage.ListOptions)
	lists      []storage.ListOptions
	// beforeDelete, when set, runs before every Delete, outside the lock.
	beforeDelete func(name string)
}

var _ storage.Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore { return &fakeStore{objs: map[string][]byte{}} }

func (f *fakeStore) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.objs[name]
	if !ok {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", name, storage.ErrNotFound)
	}
	return storage.ObjectInfo{Name: name, Size: int64(len(b)), ModTime: time.Unix(0, 0)}, nil
}

func (f *fakeStore) List(ctx context.Context, opts storage.ListOptions, fn func(storage.ObjectInfo) error) error {
	if f.beforeList != nil {
		f.beforeList(opts)
	}
	f.mu.Lock()
	f.lists = append(f.lists, opts)
	var names []string
	for n := range f.objs {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []storage.ObjectInfo
	for _, n := range names {
		if !strings.HasPrefix(n, opts.Prefix) || n <= opts.StartAfter {
			continue
		}
		if opts.Delimiter != "" {
			if i := strings.Index(n[len(opts.Prefix):], opts.Delimiter); i >= 0 {
				p := n[:len(opts.Prefix)+i+len(opts.Delimiter)]
				if len(out) == 0 || out[len(out)-1].Name != p {
					out = append(out, storage.ObjectInfo{Name: p, IsPrefix: true})
				}
				continue
			}
		}
		out = append(out, storage.ObjectInfo{Name: n, Size: int64(len(f.objs[n]))})
	}
	f.mu.Unlock()
	for _, o := range out {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeStore) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if f.failRead != nil {
		if err := f.failRead(name); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads = append(f.reads, name)
	b, ok := f.objs[name]
	if !ok {
		return nil, fmt.Errorf("read %s: %w", name, storage.ErrNotFound)
	}
	b = b[min(offset, int64(len(b))):]
	if length >= 0 && length < int64(len(b)) {
		b = b[:length]
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (f *fakeStore) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	return &fakeWriter{f: f, ctx: ctx, name: name, opts: opts}, nil
}

func (f *fakeStore) Delete(ctx context.Context, name string) error {
	if f.beforeDelete != nil {
		f.beforeDelete(name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.objs, name)
	return nil
}

func (f *fakeStore) Close() error { return nil }

// get and put bypass the Store interface for test setup and inspection.
func (f *fakeStore) get(name string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.objs[name]
	return b, ok
}

func (f *fakeStore) put(name string, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objs[name] = b
}

func (f *fakeStore) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.objs {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

type fakeWriter struct {
	f    *fakeStore
	ctx  context.Context
	name string
	opts storage.WriteOptions
	buf  bytes.Buffer
	done bool
}

func (w *fakeWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }

func (w *fakeWriter) Close() error {
	if w.done {
		return fmt.Errorf("writer closed twice")
	}
	w.done = true
	if err := w.ctx.Err(); err != nil {
		return err
	}
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	if _, ok := w.f.objs[w.name]; ok && w.opts.IfNotExists {
		return fmt.Errorf("write %s: %w", w.name, storage.ErrAlreadyExists)
	}
	w.f.objs[w.name] = bytes.Clone(w.buf.Bytes())
	w.f.commits = append(w.f.commits, w.name)
	return nil
}

func (w *fakeWriter) Abort() error {
	w.done = true
	return nil
}
