// Package memstore is an in-memory storage.Store for tests: it keeps every
// object in memory, honours the whole storage contract (it passes
// storagetest.Run, except the bounded-memory Large256MiB case, which it
// cannot pass by nature) and needs no cleanup.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// listPage is how many entries List takes under the lock at a time; fn is
// called without the lock held, so it may use the store.
const listPage = 256

// Store is an in-memory storage.Store. Objects are immutable once
// committed: a reader keeps the version it opened even if the name is
// overwritten or deleted meanwhile. Close does not discard the objects.
type Store struct {
	mu      sync.Mutex
	objects map[string]object
	names   []string // sorted keys of objects
}

type object struct {
	data    []byte
	modTime time.Time
}

var _ storage.Store = (*Store)(nil)

// New returns an empty store.
func New() storage.Store {
	return &Store{objects: map[string]object{}}
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := check(ctx, "stating", name); err != nil {
		return storage.ObjectInfo{}, err
	}
	s.mu.Lock()
	o, ok := s.objects[name]
	s.mu.Unlock()
	if !ok {
		return storage.ObjectInfo{}, fmt.Errorf("stating %s: %w", name, storage.ErrNotFound)
	}
	return storage.ObjectInfo{Name: name, Size: int64(len(o.data)), ModTime: o.modTime}, nil
}

// List implements storage.Store.
func (s *Store) List(ctx context.Context, opts storage.ListOptions, fn func(storage.ObjectInfo) error) error {
	cursor := opts.StartAfter
	if cursor < opts.Prefix {
		// Every name with the prefix is >= the prefix; starting just
		// before it is the same as starting after cursor.
		cursor = ""
	}
	var lastPrefix string
	page := make([]storage.ObjectInfo, 0, listPage)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("listing %s: %w", opts.Prefix, err)
		}
		page = page[:0]
		s.mu.Lock()
		i := sort.SearchStrings(s.names, opts.Prefix)
		if cursor != "" {
			i = max(i, sort.Search(len(s.names), func(i int) bool { return s.names[i] > cursor }))
		}
		for ; i < len(s.names) && len(page) < listPage; i++ {
			name := s.names[i]
			if !strings.HasPrefix(name, opts.Prefix) {
				i = len(s.names)
				break
			}
			cursor = name
			if opts.Delimiter != "" {
				rest := name[len(opts.Prefix):]
				if j := strings.Index(rest, opts.Delimiter); j >= 0 {
					p := name[:len(opts.Prefix)+j+len(opts.Delimiter)]
					if p == lastPrefix || p <= opts.StartAfter {
						continue
					}
					lastPrefix = p
					page = append(page, storage.ObjectInfo{Name: p, IsPrefix: true})
					continue
				}
			}
			o := s.objects[name]
			page = append(page, storage.ObjectInfo{Name: name, Size: int64(len(o.data)), ModTime: o.modTime})
		}
		done := i >= len(s.names)
		s.mu.Unlock()
		for _, info := range page {
			if err := fn(info); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}

// Read implements storage.Store.
func (s *Store) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if err := check(ctx, "reading", name); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("reading %s: negative offset %d: %w", name, offset, storage.ErrInvalidArgument)
	}
	s.mu.Lock()
	o, ok := s.objects[name]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("reading %s: %w", name, storage.ErrNotFound)
	}
	data := o.data[min(offset, int64(len(o.data))):]
	if length >= 0 && length < int64(len(data)) {
		data = data[:length]
	}
	return &reader{ctx: ctx, name: name, r: bytes.NewReader(data)}, nil
}

// reader checks ctx before every Read so that a cancelled read stops.
type reader struct {
	ctx  context.Context
	name string
	r    *bytes.Reader
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("reading %s: %w", r.name, err)
	}
	return r.r.Read(p)
}

func (r *reader) Close() error { return nil }

// Write implements storage.Store.
func (s *Store) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	if err := check(ctx, "writing", name); err != nil {
		return nil, err
	}
	return &writer{s: s, ctx: ctx, name: name, opts: opts}, nil
}

type writer struct {
	s    *Store
	ctx  context.Context
	name string
	opts storage.WriteOptions
	buf  bytes.Buffer
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("writing %s: %w: writer already closed", w.name, storage.ErrInvalidArgument)
	}
	if err := w.ctx.Err(); err != nil {
		return 0, fmt.Errorf("writing %s: %w", w.name, err)
	}
	return w.buf.Write(p)
}

func (w *writer) Close() error {
	if w.done {
		return fmt.Errorf("committing %s: %w: writer already closed", w.name, storage.ErrInvalidArgument)
	}
	w.done = true
	if err := w.ctx.Err(); err != nil {
		return fmt.Errorf("committing %s: %w", w.name, err)
	}
	data := bytes.Clone(w.buf.Bytes())
	w.buf = bytes.Buffer{}
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[w.name]; ok {
		if w.opts.IfNotExists {
			return fmt.Errorf("committing %s: %w", w.name, storage.ErrAlreadyExists)
		}
	} else {
		i := sort.SearchStrings(s.names, w.name)
		s.names = append(s.names, "")
		copy(s.names[i+1:], s.names[i:])
		s.names[i] = w.name
	}
	s.objects[w.name] = object{data: data, modTime: time.Now()}
	return nil
}

func (w *writer) Abort() error {
	w.done = true
	w.buf = bytes.Buffer{}
	return nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := check(ctx, "deleting", name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[name]; !ok {
		return nil
	}
	delete(s.objects, name)
	i := sort.SearchStrings(s.names, name)
	s.names = append(s.names[:i], s.names[i+1:]...)
	return nil
}

// Close implements storage.Store. The objects stay.
func (s *Store) Close() error { return nil }

// check validates name and reports a cancelled ctx.
func check(ctx context.Context, op, name string) error {
	if err := storage.ValidateName(name); err != nil {
		return fmt.Errorf("%s %q: %w", op, name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	return nil
}
