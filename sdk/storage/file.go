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
