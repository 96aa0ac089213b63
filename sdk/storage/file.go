package storage

import (
	"context"
	"fmt"
	"io"
	"os"
)

// FileWriter is an optional interface of a Store: it commits an object
// whose bytes are already in a file on the local file system, without the
// caller streaming them. A store on the same file system may hard-link the
// file into place; a cloud store may upload parts of it in parallel and
// retry a part from the file. The plugin protocol uses it to move a
// write's bytes across the process boundary through the file system
// instead of the socket (see storagerpc).
//
// The contract is the Writer's: nothing is visible until WriteFile returns
// nil; after an error, or when ctx is cancelled, nothing is left behind
// and a previous object of that name is unchanged. The object's content is
// the file's content when WriteFile is called; the store must not change
// or remove the file. After WriteFile returns the caller may remove the
// file but must not write to it again: the store may have kept it by a
// hard link.
type FileWriter interface {
	WriteFile(ctx context.Context, name, path string, opts WriteOptions) error
}

// WriteFile writes the file at path as object name of s: with s's
// FileWriter when it has one, else streamed through s.Write.
func WriteFile(ctx context.Context, s Store, name, path string, opts WriteOptions) error {
	if fw, ok := s.(FileWriter); ok {
		return fw.WriteFile(ctx, name, path, opts)
	}
	return CopyFile(ctx, s, name, path, opts)
}

// CopyFile streams the file at path into object name of s through
// s.Write. A FileWriter that cannot take the file another way (it is on
// another file system, say) falls back to it.
func CopyFile(ctx context.Context, s Store, name, path string, opts WriteOptions) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("writing %s from a file: %w", name, fileError(err))
	}
	defer f.Close()
	w, err := s.Write(ctx, name, opts)
	if err != nil {
		return err
	}
	defer w.Abort()
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(onlyWriter{w}, f, buf); err != nil {
		return err
	}
	return w.Close()
}

// onlyWriter hides a writer's ReadFrom, so that io.CopyBuffer uses the
// buffer given (a Writer's Write may be called with at most what its
// caller chose).
type onlyWriter struct{ io.Writer }

// fileError classifies an error opening the source file of a FileWriter.
func fileError(err error) error {
	switch {
	case os.IsNotExist(err):
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	case os.IsPermission(err):
		return fmt.Errorf("%w: %w", ErrPermissionDenied, err)
	}
	return err
}

// FileReader is an optional interface of a Store: it puts a whole object
// into a new file on the local file system, for a caller that wants the
// file rather than a stream. A store on the same file system may
// hard-link the object there; a cloud store may download its parts in
// parallel. The plugin protocol uses it to move a read's bytes across the
// process boundary through the file system (see storagerpc).
//
// ReadFile creates path, which must not exist (ErrAlreadyExists if it
// does), holding the object's bytes as of the call, and returns their
// count. A missing object is ErrNotFound. After an error, or when ctx is
// cancelled, path does not exist. The caller may read and remove the
// file but must not write to it: it may share its bytes with the object.
type FileReader interface {
	ReadFile(ctx context.Context, name, path string) (int64, error)
}

// ReadFile puts object name of s into the new file path: with s's
// FileReader when it has one, else by reading it through s.Read.
func ReadFile(ctx context.Context, s Store, name, path string) (int64, error) {
	if fr, ok := s.(FileReader); ok {
		return fr.ReadFile(ctx, name, path)
	}
	return CopyToFile(ctx, s, name, path)
}

// CopyToFile reads object name of s into the new file path through
// s.Read. A FileReader that cannot do better falls back to it.
func CopyToFile(ctx context.Context, s Store, name, path string) (n int64, err error) {
	r, err := s.Read(ctx, name, 0, -1)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if os.IsExist(err) {
			return 0, fmt.Errorf("reading %s into %s: %w: %w", name, path, ErrAlreadyExists, err)
		}
		return 0, fmt.Errorf("reading %s into %s: %w", name, path, fileError(err))
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("reading %s into %s: %w", name, path, cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	n, err = io.CopyBuffer(onlyWriter{f}, r, make([]byte, 1<<20))
	if err != nil {
		return n, err
	}
	if err := ctx.Err(); err != nil {
		return n, fmt.Errorf("reading %s: %w", name, err)
	}
	return n, nil
}
