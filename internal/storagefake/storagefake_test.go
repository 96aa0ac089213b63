package storagefake_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/internal/storagefake"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/storagetest"
)

// TestConformance proves the fake honours the storage contract, so that
// tests built on it test the code, not the fake. Large256MiB is skipped:
// the fake keeps objects in memory.
func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Config{
		NewStore:  func(t *testing.T) storage.Store { return storagefake.New() },
		SkipLarge: true,
	})
}

// TestHooksAndRecordings checks what storagetest cannot: the hooks run,
// the recordings record, and List's fn may call back into the store.
func TestHooksAndRecordings(t *testing.T) {
	ctx := context.Background()
	s := storagefake.New()
	s.Put("a/1", []byte("x"))
	if err := storage.WriteAll(ctx, s, "a/2", []byte("y"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := s.Commits(); !slices.Equal(got, []string{"a/2"}) {
		t.Errorf("Commits = %q, want [a/2] (Put is not a commit)", got)
	}

	var hooked []storage.ListOptions
	s.BeforeList = func(o storage.ListOptions) { hooked = append(hooked, o) }
	opts := storage.ListOptions{Prefix: "a/"}
	var listed []string
	if err := s.List(ctx, opts, func(o storage.ObjectInfo) error {
		listed = append(listed, o.Name)
		s.Put("b/"+o.Name, nil) // would deadlock if List held the lock
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(listed, []string{"a/1", "a/2"}) || !slices.Equal(hooked, []storage.ListOptions{opts}) ||
		!slices.Equal(s.Lists(), []storage.ListOptions{opts}) {
		t.Errorf("listed %q, hook saw %+v, Lists = %+v", listed, hooked, s.Lists())
	}
	s.ResetLists()
	if l := s.Lists(); len(l) != 0 {
		t.Errorf("Lists after ResetLists = %+v", l)
	}

	boom := errors.New("boom")
	s.FailRead = func(name string) error {
		if name == "a/1" {
			return boom
		}
		return nil
	}
	if _, err := storage.ReadAll(ctx, s, "a/1"); !errors.Is(err, boom) {
		t.Errorf("Read with FailRead = %v, want boom", err)
	}
	if got, err := storage.ReadAll(ctx, s, "a/2"); err != nil || string(got) != "y" {
		t.Errorf("Read(a/2) = %q, %v", got, err)
	}
	if got := s.Reads(); !slices.Equal(got, []string{"a/2"}) {
		t.Errorf("Reads = %q, want [a/2] (a failed read is not recorded)", got)
	}

	var deleted []string
	s.BeforeDelete = func(name string) { deleted = append(deleted, name) }
	if err := s.Delete(ctx, "a/1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get("a/1"); ok || !slices.Equal(deleted, []string{"a/1"}) {
		t.Errorf("after Delete: a/1 present %v, hook saw %q", ok, deleted)
	}
	if got := s.Names(); !slices.Equal(got, []string{"a/2", "b/a/1", "b/a/2"}) {
		t.Errorf("Names = %q", got)
	}

	// Get and Put copy: the caller's slices do not alias the store's.
	b, _ := s.Get("a/2")
	b[0] = 'z'
	if got, _ := s.Get("a/2"); string(got) != "y" {
		t.Errorf("mutating Get's result changed the object to %q", got)
	}
}
