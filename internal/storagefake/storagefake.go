// Package storagefake is an in-memory storage.Store for tests, with
// failure injection and call recording. It is sdk/storage/memstore (which
// passes the conformance kit) with hooks in front of its calls and a
// record of what the code under test did, so the storage behaviour itself
// exists once.
//
// A test can step into the store's calls (FailRead, BeforeList,
// BeforeDelete), see what the code under test did (Reads, Commits, Lists)
// and set up or inspect objects behind the Store interface's back (Get,
// Put, Names). memstore's List does not hold its lock while calling fn, so
// fn and the hooks may call back into the store.
package storagefake

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"

	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/memstore"
)

// Store is a recording storage.Store over memstore. The zero value is not
// usable; call New.
//
// The hooks are plain fields: set them before the store is shared between
// goroutines, or from within a hook (a hook may clear itself).
type Store struct {
	// FailRead, when set, is consulted before every Read; a non-nil error
	// is returned by Read as is, and the read is not recorded.
	FailRead func(name string) error
	// BeforeList, when set, runs before every List.
	BeforeList func(opts storage.ListOptions)
	// BeforeDelete, when set, runs before every Delete.
	BeforeDelete func(name string)

	inner   storage.Store
	mu      sync.Mutex
	reads   []string
	commits []string
	lists   []storage.ListOptions
}

var _ storage.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{inner: memstore.New()} }

// Stat implements storage.Store.
func (f *Store) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	return f.inner.Stat(ctx, name)
}

// List implements storage.Store and records opts (see Lists).
func (f *Store) List(ctx context.Context, opts storage.ListOptions, fn func(storage.ObjectInfo) error) error {
	if f.BeforeList != nil {
		f.BeforeList(opts)
	}
	f.mu.Lock()
	f.lists = append(f.lists, opts)
	f.mu.Unlock()
	return f.inner.List(ctx, opts, fn)
}

// Read implements storage.Store. FailRead is consulted first; a read of a
// valid name under a live ctx that gets past it is recorded (see Reads),
// found or not.
func (f *Store) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if f.FailRead != nil {
		if err := f.FailRead(name); err != nil {
			return nil, err
		}
	}
	if storage.ValidateName(name) == nil && ctx.Err() == nil && offset >= 0 {
		f.mu.Lock()
		f.reads = append(f.reads, name)
		f.mu.Unlock()
	}
	return f.inner.Read(ctx, name, offset, length)
}

// Write implements storage.Store. The object is committed, and recorded
// (see Commits), by the Writer's Close.
func (f *Store) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	w, err := f.inner.Write(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	return &writer{Writer: w, f: f, name: name}, nil
}

// Delete implements storage.Store.
func (f *Store) Delete(ctx context.Context, name string) error {
	if f.BeforeDelete != nil {
		f.BeforeDelete(name)
	}
	return f.inner.Delete(ctx, name)
}

// Close implements storage.Store. The objects stay.
func (f *Store) Close() error { return nil }

// Get returns an object's bytes, bypassing the hooks and the records.
func (f *Store) Get(name string) ([]byte, bool) {
	b, err := storage.ReadAll(context.Background(), f.inner, name)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		panic(err) // memstore fails only on bad names: a test's own mistake
	}
	return b, true
}

// Put stores b as an object, bypassing the hooks and the records (it is
// not a commit). Tests use it to set up or tamper with a store.
func (f *Store) Put(name string, b []byte) {
	if err := storage.WriteAll(context.Background(), f.inner, name, b, storage.WriteOptions{}); err != nil {
		panic(err)
	}
}

// Names returns the names of all objects, sorted.
func (f *Store) Names() []string {
	var out []string
	f.inner.List(context.Background(), storage.ListOptions{}, func(o storage.ObjectInfo) error {
		out = append(out, o.Name)
		return nil
	})
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

// writer records a commit when the underlying Close succeeds.
type writer struct {
	storage.Writer
	f    *Store
	name string
}

func (w *writer) Close() error {
	if err := w.Writer.Close(); err != nil {
		return err
	}
	w.f.mu.Lock()
	w.f.commits = append(w.f.commits, w.name)
	w.f.mu.Unlock()
	return nil
}
