// Package storagefake is an in-memory storage.Store for tests, with
// failure injection and call recording. It honours the storage contract
// (its own tests run storagetest.Run on it, except Large256MiB): objects
// are visible only after their Writer's Close, listings are in lexical
// order, and List does not hold the lock while calling fn, so fn (and the
// hooks) may call back into the store.
//
// Unlike sdk/storage/memstore, it lets a test step into the store's calls
// (FailRead, BeforeList, BeforeDelete), see what the code under test did
// (Reads, Commits, Lists) and set up or inspect objects behind the Store
// interface's back (Get, Put, Names).
package storagefake

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

// Store is an in-memory, linearizable storage.Store. The zero value is not
// usable; call New.
//
// The hooks are plain fields: set them before the store is shared between
// goroutines, or from within a hook (a hook may clear itself).
type Store struct {
	// FailRead, when set, is consulted before every Read; a non-nil error
	// is returned by Read as is, and the read is not recorded.
	FailRead func(name string) error
	// BeforeList, when set, runs before every List, outside the lock.
	BeforeList func(opts storage.ListOptions)
	// BeforeDelete, when set, runs before every Delete, outside the lock.
	BeforeDelete func(name string)

	mu      sync.Mutex
	objs    map[string][]byte
	reads   []string
	commits []string
	lists   []storage.ListOptions
}

var _ storage.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{objs: map[string][]byte{}} }

// Stat implements storage.Store.
func (f *Store) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := check(ctx, "stat", name); err != nil {
		return storage.ObjectInfo{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.objs[name]
	if !ok {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", name, storage.ErrNotFound)
	}
	return storage.ObjectInfo{Name: name, Size: int64(len(b)), ModTime: time.Unix(0, 0)}, nil
}

// List implements storage.Store. It records opts (see Lists), takes a
// snapshot of the matching entries under the lock and calls fn on them
// without it.
func (f *Store) List(ctx context.Context, opts storage.ListOptions, fn func(storage.ObjectInfo) error) error {
	if f.BeforeList != nil {
		f.BeforeList(opts)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", opts.Prefix, err)
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
				// StartAfter applies to the reported names, common
				// prefixes included.
				if p <= opts.StartAfter {
					continue
				}
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
			return fmt.Errorf("list %s: %w", opts.Prefix, err)
		}
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

// Read implements storage.Store. FailRead is consulted first; a read that
// gets past it is recorded (see Reads), found or not.
func (f *Store) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if f.FailRead != nil {
		if err := f.FailRead(name); err != nil {
			return nil, err
		}
	}
	if err := check(ctx, "read", name); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("read %s: negative offset %d: %w", name, offset, storage.ErrInvalidArgument)
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
	return &reader{ctx: ctx, name: name, r: bytes.NewReader(b)}, nil
}

// reader stops with ctx's error once ctx is cancelled.
type reader struct {
	ctx  context.Context
	name string
	r    *bytes.Reader
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", r.name, err)
	}
	return r.r.Read(p)
}

func (r *reader) Close() error { return nil }

// Write implements storage.Store. The object is committed, and recorded
// (see Commits), by the Writer's Close.
func (f *Store) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	if err := check(ctx, "write", name); err != nil {
		return nil, err
	}
	return &writer{f: f, ctx: ctx, name: name, opts: opts}, nil
}

// Delete implements storage.Store.
func (f *Store) Delete(ctx context.Context, name string) error {
	if f.BeforeDelete != nil {
		f.BeforeDelete(name)
	}
	if err := check(ctx, "delete", name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.objs, name)
	return nil
}

// Close implements storage.Store. The objects stay.
func (f *Store) Close() error { return nil }

// Get returns a copy of an object's bytes, bypassing the Store interface
// (no hook runs, nothing is recorded).
func (f *Store) Get(name string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.objs[name]
	return bytes.Clone(b), ok
}

// Put stores a copy of b as an object, bypassing the Store interface (no
// check, no hook, not recorded as a commit). Tests use it to set up or
// tamper with a store.
func (f *Store) Put(name string, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objs[name] = bytes.Clone(b)
}

// Names returns the names of all objects, sorted.
func (f *Store) Names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.objs {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Reads returns the names passed to Read, in order, since New.
func (f *Store) Reads() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reads)
}

// Commits returns the names of the objects committed through a Writer, in
// commit order, since New.
func (f *Store) Commits() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.commits)
}

// Lists returns the options of every List call since New or the last
// ResetLists, in order.
func (f *Store) Lists() []storage.ListOptions {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.lists)
}

// ResetLists forgets the List calls recorded so far.
func (f *Store) ResetLists() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists = nil
}

type writer struct {
	f    *Store
	ctx  context.Context
	name string
	opts storage.WriteOptions
	buf  bytes.Buffer
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("write %s: writer already closed", w.name)
	}
	return w.buf.Write(p)
}

func (w *writer) Close() error {
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

func (w *writer) Abort() error {
	w.done = true
	w.buf = bytes.Buffer{}
	return nil
}

// check enforces the naming rules of package storage and reports a
// cancelled ctx.
func check(ctx context.Context, op, name string) error {
	if err := storage.ValidateName(name); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	return nil
}
