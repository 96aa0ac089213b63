package storagetest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// writeFile checks storage.FileWriter, for stores that have it: the
// object is the file's content, the file is left as it was and may be
// removed afterwards, and the Writer's rules (IfNotExists, cancellation,
// nothing left by a failure) hold.
func (k *kit) writeFile(t *testing.T, s storage.Store) {
	fw, ok := s.(storage.FileWriter)
	if !ok {
		t.Skip("the store is not a storage.FileWriter")
	}
	ctx := context.Background()
	dir := t.TempDir()
	source := func(t *testing.T, name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("Basic", func(t *testing.T) {
		data := pattern(21, 3<<20+17)
		p := source(t, "basic", data)
		if err := fw.WriteFile(ctx, "f/basic", p, storage.WriteOptions{}); err != nil {
			t.Fatalf("WriteFile: %v", err)
		}
		mustContent(t, s, "f/basic", data)
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("the source file changed: %d bytes, %v", len(got), err)
		}
		// The caller may remove the file once WriteFile returned.
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		mustContent(t, s, "f/basic", data)
	})
	t.Run("Empty", func(t *testing.T) {
		p := source(t, "empty", nil)
		if err := fw.WriteFile(ctx, "f/empty", p, storage.WriteOptions{}); err != nil {
			t.Fatalf("WriteFile: %v", err)
		}
		mustContent(t, s, "f/empty", []byte{})
	})
	t.Run("Overwrite", func(t *testing.T) {
		mustWrite(t, s, "f/over", []byte("old"))
		data := pattern(22, 100_000)
		if err := fw.WriteFile(ctx, "f/over", source(t, "over", data), storage.WriteOptions{}); err != nil {
			t.Fatalf("WriteFile: %v", err)
		}
		mustContent(t, s, "f/over", data)
	})
	t.Run("IfNotExists", func(t *testing.T) {
		mustWrite(t, s, "f/cond", []byte("first"))
		err := fw.WriteFile(ctx, "f/cond", source(t, "cond", []byte("second")), storage.WriteOptions{IfNotExists: true})
		if !errors.Is(err, storage.ErrAlreadyExists) {
			t.Errorf("WriteFile over an existing object with IfNotExists = %v, want ErrAlreadyExists", err)
		}
		mustContent(t, s, "f/cond", []byte("first"))
		if err := fw.WriteFile(ctx, "f/cond-new", source(t, "cond-new", []byte("new")), storage.WriteOptions{IfNotExists: true}); err != nil {
			t.Fatalf("WriteFile of a new object with IfNotExists: %v", err)
		}
		mustContent(t, s, "f/cond-new", []byte("new"))
	})
	t.Run("MissingFile", func(t *testing.T) {
		if err := fw.WriteFile(ctx, "f/missing", filepath.Join(dir, "no-such-file"), storage.WriteOptions{}); err == nil {
			t.Error("WriteFile of a missing file succeeded")
		}
		mustNotExist(t, s, "f/missing")
	})
	t.Run("CancelledContext", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := fw.WriteFile(cctx, "f/cancelled", source(t, "cancelled", pattern(23, 1<<20)), storage.WriteOptions{}); err == nil {
			t.Error("WriteFile with a cancelled context succeeded")
		}
		mustNotExist(t, s, "f/cancelled")
	})
	t.Run("InvalidName", func(t *testing.T) {
		if err := fw.WriteFile(ctx, "../escape", source(t, "invalid", []byte("x")), storage.WriteOptions{}); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("WriteFile(%q) = %v, want ErrInvalidArgument", "../escape", err)
		}
	})
}

// readFile checks storage.FileReader, for stores that have it: the new
// file holds the object as of the call, later changes to the object do
// not reach it, removing it leaves the object, and failures leave no file.
func (k *kit) readFile(t *testing.T, s storage.Store) {
	fr, ok := s.(storage.FileReader)
	if !ok {
		t.Skip("the store is not a storage.FileReader")
	}
	ctx := context.Background()
	dir := t.TempDir()
	mustFile := func(t *testing.T, p string, want []byte) {
		t.Helper()
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("file %s: %d bytes %s, %v; want %d bytes %s", p, len(got), summary(got), err, len(want), summary(want))
		}
	}
	mustNoFile := func(t *testing.T, p string) {
		t.Helper()
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a failed ReadFile left %s (%v)", p, err)
		}
	}
	t.Run("Basic", func(t *testing.T) {
		data := pattern(31, 3<<20+5)
		mustWrite(t, s, "r/basic", data)
		p := filepath.Join(dir, "basic")
		n, err := fr.ReadFile(ctx, "r/basic", p)
		if err != nil || n != int64(len(data)) {
			t.Fatalf("ReadFile = %d, %v; want %d, nil", n, err, len(data))
		}
		mustFile(t, p, data)
		// A later overwrite does not reach the file, and removing the
		// file leaves the object.
		mustWrite(t, s, "r/basic", []byte("new"))
		mustFile(t, p, data)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		mustContent(t, s, "r/basic", []byte("new"))
	})
	t.Run("Empty", func(t *testing.T) {
		mustWrite(t, s, "r/empty", nil)
		p := filepath.Join(dir, "empty")
		if n, err := fr.ReadFile(ctx, "r/empty", p); err != nil || n != 0 {
			t.Fatalf("ReadFile = %d, %v; want 0, nil", n, err)
		}
		mustFile(t, p, []byte{})
	})
	t.Run("NotFound", func(t *testing.T) {
		mustWrite(t, s, "r/dir/obj", []byte("x"))
		for _, name := range []string{"r/missing", "r/dir"} {
			p := filepath.Join(dir, "missing")
			if _, err := fr.ReadFile(ctx, name, p); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("ReadFile(%q) = %v, want ErrNotFound", name, err)
			}
			mustNoFile(t, p)
		}
	})
	t.Run("PathExists", func(t *testing.T) {
		mustWrite(t, s, "r/obj", []byte("object"))
		p := filepath.Join(dir, "exists")
		if err := os.WriteFile(p, []byte("mine"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := fr.ReadFile(ctx, "r/obj", p); !errors.Is(err, storage.ErrAlreadyExists) {
			t.Errorf("ReadFile into an existing file = %v, want ErrAlreadyExists", err)
		}
		mustFile(t, p, []byte("mine"))
	})
	t.Run("CancelledContext", func(t *testing.T) {
		mustWrite(t, s, "r/obj", []byte("object"))
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		p := filepath.Join(dir, "cancelled")
		if _, err := fr.ReadFile(cctx, "r/obj", p); err == nil {
			t.Error("ReadFile with a cancelled context succeeded")
		}
		mustNoFile(t, p)
	})
}
