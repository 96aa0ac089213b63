package local_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnbackup/cairn/core/cloud/local"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/storagetest"
)

func newStore(t *testing.T, root string) *local.Store {
	t.Helper()
	s, err := local.New(root)
	if err != nil {
		t.Fatalf("local.New(%s): %v", root, err)
	}
	return s
}

// checkNoTmpLeft fails when a write left a temporary file behind.
func checkNoTmpLeft(t *testing.T, root string) {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(root, local.TmpDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, de := range des {
		t.Errorf("temporary file %s left in %s", de.Name(), root)
	}
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			root := t.TempDir()
			t.Cleanup(func() { checkNoTmpLeft(t, root) })
			return newStore(t, root)
		},
		SkipLarge:        testing.Short(),
		FileDirConflicts: true,
	})
}

// TestConformanceUnderPrefix runs the kit on a store rooted in a
// subdirectory of another store's root, and checks that nothing it does
// reaches outside that subdirectory.
func TestConformanceUnderPrefix(t *testing.T) {
	ctx := context.Background()
	// Neighbours of "sub/" in byte order, and one object inside it that
	// the inner store must not see (it is put there by the outer store
	// under the reserved temporary directory, which both skip).
	sentinels := []string{"su", "sub.x", "sub0/y", "sub-/z", "zzz"}
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			root := t.TempDir()
			outer := newStore(t, root)
			for _, name := range sentinels {
				if err := storage.WriteAll(ctx, outer, name, []byte("outer "+name), storage.WriteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() {
				checkNoTmpLeft(t, filepath.Join(root, "sub"))
				var seen []string
				err := outer.List(ctx, storage.ListOptions{}, func(o storage.ObjectInfo) error {
					if !strings.HasPrefix(o.Name, "sub/") {
						seen = append(seen, o.Name)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				want := slices.Clone(sentinels)
				slices.Sort(want)
				if !slices.Equal(seen, want) {
					t.Errorf("outside the inner store the outer one holds %q, want %q", seen, want)
				}
				for _, name := range sentinels {
					got, err := storage.ReadAll(ctx, outer, name)
					if err != nil || string(got) != "outer "+name {
						t.Errorf("outer object %s = %q, %v; want it unchanged", name, got, err)
					}
				}
			})
			return newStore(t, filepath.Join(root, "sub"))
		},
		SkipLarge:        true,
		FileDirConflicts: true,
		ManyObjects:      1100,
	})
}

// TestCrashedWriterLeftovers: files a crashed writer left in the
// temporary directory (at the root or in a nested store's root) are never
// listed and do not block writes.
func TestCrashedWriterLeftovers(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := newStore(t, root)
	for _, p := range []string{
		filepath.Join(root, local.TmpDir, "w-123"),
		filepath.Join(root, "dir", local.TmpDir, "w-456"),
		filepath.Join(root, "dir", local.TmpDir, "nested", "w-789"),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("half written"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := storage.WriteAll(ctx, s, "dir/obj", []byte("ok"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []storage.ListOptions{
		{},
		{Delimiter: "/"},
		{Prefix: "dir/"},
		{Prefix: "dir/", Delimiter: "/"},
		{Prefix: "."},
		{Prefix: "dir/."},
		{Prefix: local.TmpDir + "/"},
		{Prefix: "dir/" + local.TmpDir},
	} {
		var got []string
		if err := s.List(ctx, opts, func(o storage.ObjectInfo) error {
			got = append(got, o.Name)
			return nil
		}); err != nil {
			t.Fatalf("List(%+v): %v", opts, err)
		}
		for _, name := range got {
			if strings.Contains(name, local.TmpDir) {
				t.Errorf("List(%+v) shows %q", opts, name)
			}
		}
	}
	for _, name := range []string{local.TmpDir + "/w-123", "dir/" + local.TmpDir + "/w-456", local.TmpDir} {
		if _, err := s.Stat(ctx, name); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidArgument (reserved name)", name, err)
		}
		if err := storage.WriteAll(ctx, s, name, []byte("x"), storage.WriteOptions{}); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("writing %q = %v, want ErrInvalidArgument (reserved name)", name, err)
		}
	}
}

func TestLayoutAndDeleteCleansDirectories(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := newStore(t, root)
	for _, name := range []string{"a/b/c/obj", "a/keep"} {
		if err := storage.WriteAll(ctx, s, name, []byte(name), storage.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Objects are plain files under the root.
	if got, err := os.ReadFile(filepath.Join(root, "a", "b", "c", "obj")); err != nil || string(got) != "a/b/c/obj" {
		t.Fatalf("file for a/b/c/obj = %q, %v", got, err)
	}
	if err := s.Delete(ctx, "a/b/c/obj"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "a", "b")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty directory a/b was not removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "a", "keep")); err != nil {
		t.Errorf("a/keep: %v", err)
	}
	if err := s.Delete(ctx, "a/keep"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); err != nil {
		t.Errorf("the root itself must stay: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty directory a was not removed: %v", err)
	}
	// An empty directory left by someone else lists as nothing.
	if err := os.MkdirAll(filepath.Join(root, "empty", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := s.List(ctx, storage.ListOptions{Delimiter: "/"}, func(o storage.ObjectInfo) error {
		got = append(got, o.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("List = %q, want nothing (only empty directories)", got)
	}
	// Deleting a directory name is a no-op and keeps what is below it.
	if err := storage.WriteAll(ctx, s, "empty/deeper/x", []byte("x"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "empty"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "empty/deeper/x"); err != nil {
		t.Errorf("Stat(empty/deeper/x) after deleting the directory name: %v", err)
	}
}

func TestNewRoot(t *testing.T) {
	dir := t.TempDir()
	// A missing root is created, with its parents.
	root := filepath.Join(dir, "x", "y")
	s := newStore(t, root)
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		t.Fatalf("root not created: %v", err)
	}
	if s.Root() != root {
		t.Errorf("Root() = %q, want %q", s.Root(), root)
	}
	// Opening does not write: no temporary directory until a write.
	if _, err := os.Stat(filepath.Join(root, local.TmpDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("New created %s: %v", local.TmpDir, err)
	}
	// A root that is a file is refused.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := local.New(file); err == nil {
		t.Errorf("local.New on a file: no error")
	}
	// A relative root is made absolute.
	t.Chdir(dir)
	rel := newStore(t, "rel")
	if rel.Root() != filepath.Join(dir, "rel") {
		t.Errorf("Root() = %q, want %q", rel.Root(), filepath.Join(dir, "rel"))
	}
}

func TestErrorMapping(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: file modes do not deny access")
	}
	ctx := context.Background()
	root := t.TempDir()
	s := newStore(t, root)
	if err := storage.WriteAll(ctx, s, "locked/obj", []byte("x"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "locked"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(root, "locked"), 0o755) })
	if _, err := storage.ReadAll(ctx, s, "locked/obj"); !errors.Is(err, storage.ErrPermissionDenied) {
		t.Errorf("reading from an unreadable directory = %v, want ErrPermissionDenied", err)
	}
	if err := s.List(ctx, storage.ListOptions{Prefix: "locked/"}, func(storage.ObjectInfo) error { return nil }); !errors.Is(err, storage.ErrPermissionDenied) {
		t.Errorf("listing an unreadable directory = %v, want ErrPermissionDenied", err)
	}
	if err := storage.WriteAll(ctx, s, "locked/new", []byte("x"), storage.WriteOptions{}); !errors.Is(err, storage.ErrPermissionDenied) {
		t.Errorf("writing into an unwritable directory = %v, want ErrPermissionDenied", err)
	}
}

func TestClassifyNoSpace(t *testing.T) {
	// ENOSPC cannot be provoked portably; check the mapping through the
	// exported behaviour of errors: a full disk is retryable
	// ErrResourceExhausted. The mapping function is internal, so this
	// goes through export_test.go.
	err := local.Classify(&fs.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC})
	if !errors.Is(err, storage.ErrResourceExhausted) || !storage.IsRetryable(err) {
		t.Errorf("ENOSPC maps to %v, want retryable ErrResourceExhausted", err)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("the original error is lost: %v", err)
	}
	for errno, want := range map[syscall.Errno]error{
		syscall.ENOENT:  storage.ErrNotFound,
		syscall.ENOTDIR: storage.ErrNotFound,
		syscall.EACCES:  storage.ErrPermissionDenied,
		syscall.EPERM:   storage.ErrPermissionDenied,
		syscall.EROFS:   storage.ErrPermissionDenied,
		syscall.EDQUOT:  storage.ErrResourceExhausted,
		syscall.EEXIST:  storage.ErrAlreadyExists,
	} {
		if err := local.Classify(&fs.PathError{Op: "op", Path: "/x", Err: errno}); !errors.Is(err, want) {
			t.Errorf("%v maps to %v, want %v", errno, err, want)
		}
	}
}
