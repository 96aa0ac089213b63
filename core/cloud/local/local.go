// Package local is the built-in storage.Store on a local file system, the
// one behind nodelocal:// and file:// URIs.
//
// Layout: an object "a/b/c" is the file <root>/a/b/c, so a directory
// written by cairn can be read, copied or restored with ordinary tools. As
// on any file system, a name cannot be both an object and a directory:
// with an object "a", writing "a/b" fails, and the other way round (see
// storagetest.Config.FileDirConflicts).
//
// Atomicity: a write goes to a temporary file in <root>/.cairn-tmp (the
// same file system as its destination), is synced, then renamed into place
// (or, for IfNotExists, hard-linked, which fails when the name exists, so
// two conditional writers cannot both win), and the destination directory
// is synced. A crashed writer leaves at most a file in .cairn-tmp, which
// listings never show. The element name ".cairn-tmp" is reserved: it is
// skipped at every depth (a store may be rooted inside another) and
// refused in object names.
package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// TmpDir is the name of the directory, inside the root, that holds
// objects being written.
const TmpDir = ".cairn-tmp"

// Store is a storage.Store rooted at a local directory. It is safe for
// concurrent use, also by several Stores (or processes) sharing a root.
type Store struct {
	root string // absolute and clean
	tmp  string
}

var (
	_ storage.Store      = (*Store)(nil)
	_ storage.FileWriter = (*Store)(nil)
	_ storage.FileReader = (*Store)(nil)
)

// New returns a store rooted at root, creating the directory if it is
// missing. The temporary directory is created on the first write, so a
// store on a read-only directory can be listed and read.
func New(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("opening local store %s: %w", root, classify(err))
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("opening local store %s: %w", abs, classify(err))
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("opening local store %s: %w", abs, classify(err))
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("opening local store %s: not a directory: %w", abs, storage.ErrInvalidArgument)
	}
	return &Store{root: abs, tmp: filepath.Join(abs, TmpDir)}, nil
}

// Root returns the absolute directory the store is rooted at.
func (s *Store) Root() string { return s.root }

func (s *Store) path(name string) string {
	return filepath.Join(s.root, filepath.FromSlash(name))
}

// Stat implements storage.Store. Directories are not objects: Stat of one
// returns ErrNotFound.
func (s *Store) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := check(ctx, "stating", name); err != nil {
		return storage.ObjectInfo{}, err
	}
	fi, err := os.Stat(s.path(name))
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stating %s: %w", name, classify(err))
	}
	if !fi.Mode().IsRegular() {
		return storage.ObjectInfo{}, fmt.Errorf("stating %s: %w", name, storage.ErrNotFound)
	}
	return storage.ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// ReadFile implements storage.FileReader. When path is on the store's
// file system it becomes a hard link to the object: nothing is copied,
// and a later overwrite of the object (a rename) leaves it as it was.
// Otherwise the object is copied.
func (s *Store) ReadFile(ctx context.Context, name, path string) (int64, error) {
	info, err := s.Stat(ctx, name)
	if err != nil {
		return 0, err
	}
	if err := os.Link(s.path(name), path); err != nil {
		switch {
		case errors.Is(err, fs.ErrExist):
			return 0, fmt.Errorf("reading %s into %s: %w", name, path, storage.ErrAlreadyExists)
		case errors.Is(err, fs.ErrNotExist):
			if _, serr := os.Stat(s.path(name)); serr != nil {
				return 0, fmt.Errorf("reading %s: %w", name, classify(serr))
			}
			return 0, fmt.Errorf("reading %s into %s: %w", name, path, classify(err))
		}
		// Another file system, or links refused: copy.
		return storage.CopyToFile(ctx, s, name, path)
	}
	// The link is to whatever the name held at link time; its size is
	// that file's.
	if fi, err := os.Stat(path); err == nil {
		return fi.Size(), nil
	}
	return info.Size, nil
}

// Read implements storage.Store. The reader holds the file open, so it
// keeps the bytes it opened even if the object is replaced or deleted;
// it checks ctx before every read.
func (s *Store) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if err := check(ctx, "reading", name); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("reading %s: negative offset %d: %w", name, offset, storage.ErrInvalidArgument)
	}
	f, err := os.Open(s.path(name))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, classify(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading %s: %w", name, classify(err))
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("reading %s: %w", name, storage.ErrNotFound)
	}
	size := fi.Size()
	offset = min(offset, size)
	n := size - offset
	if length >= 0 {
		n = min(n, length)
	}
	return &reader{ctx: ctx, name: name, f: f, r: io.NewSectionReader(f, offset, n)}, nil
}

// maxReadChunk bounds one read from the file, so that a caller with a huge
// buffer still sees cancellation between chunks.
const maxReadChunk = 1 << 20

type reader struct {
	ctx  context.Context
	name string
	f    *os.File
	r    *io.SectionReader
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("reading %s: %w", r.name, err)
	}
	if len(p) > maxReadChunk {
		p = p[:maxReadChunk]
	}
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("reading %s: %w", r.name, classify(err))
	}
	return n, err
}

func (r *reader) Close() error { return r.f.Close() }

// Write implements storage.Store.
func (s *Store) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	if err := check(ctx, "writing", name); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.tmp, 0o755); err != nil {
		return nil, fmt.Errorf("writing %s: creating %s: %w", name, TmpDir, classify(err))
	}
	f, err := os.CreateTemp(s.tmp, "w-*")
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", name, classify(err))
	}
	return &writer{s: s, ctx: ctx, name: name, opts: opts, f: f}, nil
}

type writer struct {
	s    *Store
	ctx  context.Context
	name string
	opts storage.WriteOptions
	f    *os.File // nil once closed or aborted
	err  error    // sticky write error
}

func (w *writer) Write(p []byte) (int, error) {
	if w.f == nil {
		return 0, fmt.Errorf("writing %s: %w: writer already closed", w.name, storage.ErrInvalidArgument)
	}
	if w.err != nil {
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		w.err = fmt.Errorf("writing %s: %w", w.name, err)
		return 0, w.err
	}
	n, err := w.f.Write(p)
	if err != nil {
		w.err = fmt.Errorf("writing %s: %w", w.name, classify(err))
	}
	return n, w.err
}

// Close syncs the temporary file and moves it into place. On any error
// the temporary file is removed and a previous object is unchanged.
func (w *writer) Close() error {
	if w.f == nil {
		return fmt.Errorf("committing %s: %w: writer already closed", w.name, storage.ErrInvalidArgument)
	}
	f := w.f
	w.f = nil
	tmp := f.Name()
	defer os.Remove(tmp) // after a rename there is nothing left; after a link, the extra name
	if w.err != nil {
		f.Close()
		return w.err
	}
	if err := w.ctx.Err(); err != nil {
		f.Close()
		return fmt.Errorf("committing %s: %w", w.name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("committing %s: syncing: %w", w.name, classify(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("committing %s: %w", w.name, classify(err))
	}
	return w.s.commit(w.ctx, w.name, tmp, w.opts)
}

// commit moves the synced temporary file tmp into place as name (a link
// when IfNotExists, so an existing object is never replaced).
func (s *Store) commit(ctx context.Context, name, tmp string, opts storage.WriteOptions) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("committing %s: %w", name, err)
	}
	dst := s.path(name)
	dir := filepath.Dir(dst)
	// A concurrent Delete may remove the (then empty) parent directories
	// between MkdirAll and the rename; try again a few times.
	var err error
	for range 5 {
		if err = os.MkdirAll(dir, 0o755); err != nil {
			break
		}
		if opts.IfNotExists {
			err = os.Link(tmp, dst)
		} else {
			err = os.Rename(tmp, dst)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("committing %s: %w", name, s.commitError(name, dst, err))
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("committing %s: syncing directory: %w", name, classify(err))
	}
	return nil
}

// WriteFile implements storage.FileWriter. When path is on the store's
// file system, the object is a hard link to it: its bytes are not copied
// (the caller promises not to write to the file again). Otherwise they
// are copied as by Write.
func (s *Store) WriteFile(ctx context.Context, name, path string, opts storage.WriteOptions) error {
	if err := check(ctx, "writing", name); err != nil {
		return err
	}
	if err := os.MkdirAll(s.tmp, 0o755); err != nil {
		return fmt.Errorf("writing %s: creating %s: %w", name, TmpDir, classify(err))
	}
	// A fresh name in the temporary directory: link to it, sync it (the
	// inode, so the bytes, whoever wrote them), then commit as Close does.
	f, err := os.CreateTemp(s.tmp, "w-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, classify(err))
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("writing %s: %w", name, classify(err))
	}
	if err := os.Link(path, tmp); err != nil {
		if _, serr := os.Stat(path); serr != nil {
			return fmt.Errorf("writing %s from %s: %w", name, path, classify(serr))
		}
		// Another file system, or links refused: copy.
		return storage.CopyFile(ctx, s, name, path, opts)
	}
	f, err = os.Open(tmp)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, classify(err))
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return fmt.Errorf("committing %s: syncing: %w", name, classify(err))
	}
	return s.commit(ctx, name, tmp, opts)
}

// commitError explains why the rename or link to dst failed.
func (s *Store) commitError(name, dst string, err error) error {
	if errors.Is(err, syscall.ENOTDIR) {
		return &fsError{kind: storage.ErrAlreadyExists, err: fmt.Errorf("an element of %s is an object, not a directory: %w", name, err)}
	}
	if fi, serr := os.Lstat(dst); serr == nil && fi.IsDir() {
		return &fsError{kind: storage.ErrAlreadyExists, err: fmt.Errorf("%s is a directory holding other objects: %w", name, err)}
	}
	return classify(err)
}

// Abort removes the temporary file. It is a no-op after Close or Abort.
func (w *writer) Abort() error {
	if w.f == nil {
		return nil
	}
	f := w.f
	w.f = nil
	f.Close()
	if err := os.Remove(f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("aborting %s: %w", w.name, classify(err))
	}
	return nil
}

// Delete implements storage.Store. A directory is not an object: deleting
// one is a no-op. After removing the file, Delete removes the parent
// directories that became empty, up to the root (best effort: a
// concurrent writer may fill one again, and that is fine).
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := check(ctx, "deleting", name); err != nil {
		return err
	}
	p := s.path(name)
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(classify(err), storage.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("deleting %s: %w", name, classify(err))
	}
	if fi.IsDir() {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting %s: %w", name, classify(err))
	}
	for dir := filepath.Dir(p); dir != s.root && strings.HasPrefix(dir, s.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// Close implements storage.Store; a local store holds no resources.
func (s *Store) Close() error { return nil }

// List implements storage.Store. It walks the directories below the
// deepest one the prefix names, holding one directory's entries at a time
// per level. Entries are ordered by their name with "/" appended to
// directories, which is the byte order of the object names below them
// ("a.b" < "a/" < "a0"). With a delimiter, the walk skips the rest of a
// common prefix once it has been reported.
func (s *Store) List(ctx context.Context, opts storage.ListOptions, fn func(storage.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("listing %s: %w", opts.Prefix, err)
	}
	startDir := opts.Prefix[:strings.LastIndex(opts.Prefix, "/")+1]
	if startDir != "" && validName(strings.TrimSuffix(startDir, "/")) != nil {
		// No valid object name has this prefix.
		return nil
	}
	w := walker{s: s}
	if err := w.push(startDir); err != nil {
		return fmt.Errorf("listing %s: %w", opts.Prefix, err)
	}
	var lastPrefix string
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("listing %s: %w", opts.Prefix, err)
		}
		e, ok, err := w.next(func(key string, isDir bool) bool {
			if !strings.HasPrefix(key, opts.Prefix) {
				return false
			}
			if lastPrefix != "" && strings.HasPrefix(key, lastPrefix) {
				return false
			}
			if isDir {
				// Names below key all start with key; they can all be at
				// or before StartAfter only if StartAfter is past key and
				// does not start with it.
				return !(opts.StartAfter > key && !strings.HasPrefix(opts.StartAfter, key))
			}
			return key > opts.StartAfter
		})
		if err != nil {
			return fmt.Errorf("listing %s: %w", opts.Prefix, err)
		}
		if !ok {
			return nil
		}
		if opts.Delimiter != "" {
			rest := e.key[len(opts.Prefix):]
			if i := strings.Index(rest, opts.Delimiter); i >= 0 {
				p := e.key[:len(opts.Prefix)+i+len(opts.Delimiter)]
				lastPrefix = p
				if p <= opts.StartAfter {
					continue
				}
				if err := fn(storage.ObjectInfo{Name: p, IsPrefix: true}); err != nil {
					return err
				}
				continue
			}
			if e.key <= opts.StartAfter {
				continue
			}
		}
		fi, err := e.info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted since the directory was read
			}
			return fmt.Errorf("listing %s: %w", opts.Prefix, classify(err))
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if err := fn(storage.ObjectInfo{Name: e.key, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
	}
}

// walker visits the files below a directory in byte order of their names.
type walker struct {
	s     *Store
	stack []*frame
}

type frame struct {
	entries []entry
	i       int
}

type entry struct {
	key   string // object name; for a directory, with "/" appended
	isDir bool
	info  func() (fs.FileInfo, error)
}

// push reads the directory dir ("" for the root, else ending in "/").
// A directory that does not exist (or is not one) is empty.
func (w *walker) push(dir string) error {
	des, err := os.ReadDir(filepath.Join(w.s.root, filepath.FromSlash(dir)))
	if err != nil {
		if errors.Is(classify(err), storage.ErrNotFound) {
			return nil
		}
		return classify(err)
	}
	entries := make([]entry, 0, len(des))
	for _, de := range des {
		if de.Name() == TmpDir {
			continue
		}
		e := entry{key: dir + de.Name(), info: de.Info}
		switch t := de.Type(); {
		case t.IsDir():
			e.isDir = true
		case t&fs.ModeSymlink != 0:
			// A link to a file lists as that file, as Stat and Read
			// follow it. A link to a directory is not followed: it could
			// lead out of the root or round in a loop.
			p := filepath.Join(w.s.root, filepath.FromSlash(e.key))
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			e.info = func() (fs.FileInfo, error) { return os.Stat(p) }
		case !t.IsRegular():
			continue
		}
		if e.isDir {
			e.key += "/"
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b entry) int { return cmp.Compare(a.key, b.key) })
	w.stack = append(w.stack, &frame{entries: entries})
	return nil
}

// next returns the next file for which keep returns true, descending into
// the directories for which it returns true.
func (w *walker) next(keep func(key string, isDir bool) bool) (entry, bool, error) {
	for len(w.stack) > 0 {
		top := w.stack[len(w.stack)-1]
		if top.i == len(top.entries) {
			w.stack = w.stack[:len(w.stack)-1]
			continue
		}
		e := top.entries[top.i]
		top.entries[top.i] = entry{} // let it go
		top.i++
		if !keep(e.key, e.isDir) {
			continue
		}
		if e.isDir {
			if err := w.push(e.key); err != nil {
				return entry{}, false, err
			}
			continue
		}
		return e, true, nil
	}
	return entry{}, false, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// check validates name and reports a cancelled ctx.
func check(ctx context.Context, op, name string) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("%s %q: %w", op, name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	return nil
}

// validName enforces the naming rules of package storage, and refuses
// the reserved element TmpDir and NUL bytes.
func validName(name string) error {
	if err := storage.ValidateName(name); err != nil {
		return err
	}
	if strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("object name has a NUL byte: %w", storage.ErrInvalidArgument)
	}
	for elem := range strings.SplitSeq(name, "/") {
		if elem == TmpDir {
			return fmt.Errorf("object name has the reserved element %q: %w", TmpDir, storage.ErrInvalidArgument)
		}
	}
	return nil
}

// fsError is a file system error classified as one of the storage
// sentinels. Its message is the underlying error's.
type fsError struct {
	kind error
	err  error
}

func (e *fsError) Error() string   { return e.err.Error() }
func (e *fsError) Unwrap() []error { return []error{e.kind, e.err} }

// classify maps a file system error onto the storage sentinels, keeping
// the original error in the chain.
func classify(err error) error {
	var kind error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		kind = storage.ErrNotFound
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		kind = storage.ErrPermissionDenied
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		kind = storage.ErrResourceExhausted
	case errors.Is(err, fs.ErrExist):
		kind = storage.ErrAlreadyExists
	case errors.Is(err, syscall.ENAMETOOLONG), errors.Is(err, syscall.EINVAL):
		kind = storage.ErrInvalidArgument
	default:
		return err
	}
	return &fsError{kind: kind, err: err}
}
