// Package storagetest is the conformance kit for storage.Store
// implementations. Every implementation, cairn's own and third parties',
// runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, storagetest.Config{
//			NewStore: func(t *testing.T) storage.Store {
//				s, err := mystore.Open(...)
//				if err != nil {
//					t.Fatal(err)
//				}
//				return s
//			},
//			SkipLarge: testing.Short(),
//		})
//	}
//
// Run starts one subtest per property of the storage contract. The subtest
// names are stable and serve as documentation of what is checked; run one
// with `go test -run 'TestConformance/RangedReads'`. Each subtest gets a
// fresh store from Config.NewStore and closes it when it ends.
//
// Where the comments of package storage leave room, the kit pins down:
//   - StartAfter applies to the names the listing reports, common prefixes
//     included: with Delimiter "/" and StartAfter "a/b", the prefix "a/" is
//     not reported (it sorts before "a/b"), even though "a/b/c" is after
//     it. A backend whose server reports it anyway must filter it out.
//   - A listing never reports a common prefix twice, nor one that holds no
//     object.
//   - A name that is only a prefix of other objects is not an object:
//     Stat and Read give ErrNotFound, Delete is a no-op.
//   - Read with a negative offset gives ErrInvalidArgument.
//   - Names breaking the naming rules of package storage give
//     ErrInvalidArgument from Stat, Read and Delete, and from Write, the
//     first Writer.Write or Close; a listing prefix that no valid name can
//     have lists nothing.
//   - Every method fails when its context is already cancelled, and a
//     Writer whose context is cancelled fails at Close at the latest.
//
// The kit imports the standard library and cairn's sdk only (plus
// go-plugin, for OverPlugin), so a plugin author can depend on it without
// pulling in cairn's core. Run it three ways: on the store directly, over
// the plugin boundary (OverPlugin) and under a key prefix (PrefixedStore).
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// Config describes the store under test.
type Config struct {
	// NewStore returns a fresh, empty store. The kit closes it when the
	// subtest that asked for it ends. NewStore may register its own
	// t.Cleanup checks; they run after the kit has closed the store.
	NewStore func(t *testing.T) storage.Store

	// SkipLarge skips the Large256MiB case (for -short runs, or for a
	// store that keeps objects in memory and so cannot bound its memory).
	SkipLarge bool

	// FileDirConflicts declares that, as on a file system, a name cannot
	// be both an object and a prefix of other objects followed by "/":
	// objects "a" and "a/b" cannot coexist. The kit then leaves such pairs
	// out of its listing trees and instead checks, in
	// ListPrefixDelimiter/Conflicts, that the second write fails cleanly
	// (an error from Write or Close, nothing new visible, the first object
	// unchanged). Object stores (S3, GCS, Azure, memory) leave it false.
	FileDirConflicts bool

	// ManyObjects is how many objects ListManyPages writes; 0 means 2,500.
	// Pick more than the store's listing page size so that paging is
	// exercised.
	ManyObjects int

	// LargeHeapLimit is how far the Go heap in use may rise above its
	// baseline while Large256MiB streams; 0 means 64 MiB. See Large256MiB.
	LargeHeapLimit uint64
}

// Run checks that the store returned by cfg.NewStore honours the
// storage.Store contract. Run does not call t.Parallel: the memory bound
// of Large256MiB is measured on the whole test process, so keep other
// work out of it while that case runs.
func Run(t *testing.T, cfg Config) {
	if cfg.NewStore == nil {
		t.Fatal("storagetest: Config.NewStore is nil")
	}
	if cfg.ManyObjects <= 0 {
		cfg.ManyObjects = 2500
	}
	if cfg.LargeHeapLimit == 0 {
		cfg.LargeHeapLimit = 64 << 20
	}
	k := &kit{cfg: cfg}
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"NotFound", k.notFound},
		{"VisibleOnlyAfterClose", k.visibleOnlyAfterClose},
		{"AbortLeavesNothing", k.abortLeavesNothing},
		{"CancelledWriteLeavesNothing", k.cancelledWriteLeavesNothing},
		{"Overwrite", k.overwrite},
		{"IfNotExists", k.ifNotExists},
		{"RangedReads", k.rangedReads},
		{"ListPrefixDelimiter", k.listPrefixDelimiter},
		{"ListManyPages", k.listManyPages},
		{"DeleteMissing", k.deleteMissing},
		{"Delete", k.delete},
		{"ConcurrentReadersWriters", k.concurrentReadersWriters},
		{"CancelledContext", k.cancelledContext},
		{"CancelMidRead", k.cancelMidRead},
		{"CancelMidWrite", k.cancelMidWrite},
		{"InvalidNames", k.invalidNames},
		{"WriteFile", k.writeFile},
		{"ReadFile", k.readFile},
		{"Large256MiB", k.large},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := cfg.NewStore(t)
			if s == nil {
				t.Fatal("storagetest: NewStore returned nil")
			}
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("closing store: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

type kit struct {
	cfg Config
}

// ---------------------------------------------------------------------------
// Cases.

func (k *kit) notFound(t *testing.T, s storage.Store) {
	ctx := context.Background()
	for _, name := range []string{"missing", "dir/missing", "a/b/c/d"} {
		if _, err := s.Stat(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat(%q) = %v, want ErrNotFound", name, err)
		}
		if r, err := s.Read(ctx, name, 0, -1); !errors.Is(err, storage.ErrNotFound) {
			if r != nil {
				r.Close()
			}
			t.Errorf("Read(%q) = %v, want ErrNotFound", name, err)
		}
		if r, err := s.Read(ctx, name, 10, 5); !errors.Is(err, storage.ErrNotFound) {
			if r != nil {
				r.Close()
			}
			t.Errorf("Read(%q, 10, 5) = %v, want ErrNotFound", name, err)
		}
	}

	// A name that is only a prefix of other objects is not an object.
	mustWrite(t, s, "dir/sub/obj", []byte("x"))
	for _, name := range []string{"dir", "dir/sub"} {
		if _, err := s.Stat(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat(%q) of a prefix = %v, want ErrNotFound", name, err)
		}
		if r, err := s.Read(ctx, name, 0, -1); !errors.Is(err, storage.ErrNotFound) {
			if r != nil {
				r.Close()
			}
			t.Errorf("Read(%q) of a prefix = %v, want ErrNotFound", name, err)
		}
		if err := s.Delete(ctx, name); err != nil {
			t.Errorf("Delete(%q) of a prefix = %v, want nil", name, err)
		}
	}
	mustContent(t, s, "dir/sub/obj", []byte("x"))
	// A name below an object is not an object either.
	mustWrite(t, s, "file", []byte("y"))
	if _, err := s.Stat(ctx, "file/below"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat(%q) = %v, want ErrNotFound", "file/below", err)
	}
}

func (k *kit) visibleOnlyAfterClose(t *testing.T, s storage.Store) {
	ctx := context.Background()
	data := pattern(3, 100_000)
	w, err := s.Write(ctx, "dir/obj", storage.WriteOptions{})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	defer w.Abort()
	if _, err := w.Write(data[:50_000]); err != nil {
		t.Fatalf("writing first half: %v", err)
	}
	mustNotExist(t, s, "dir/obj")
	if _, err := w.Write(data[50_000:]); err != nil {
		t.Fatalf("writing second half: %v", err)
	}
	mustNotExist(t, s, "dir/obj")
	if got := listNames(t, s, storage.ListOptions{}); len(got) != 0 {
		t.Errorf("List during write = %q, want nothing", got)
	}
	if got := listNames(t, s, storage.ListOptions{Delimiter: "/"}); len(got) != 0 {
		t.Errorf("delimited List during write = %q, want nothing", got)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Errorf("Abort after Close = %v, want nil (a no-op)", err)
	}
	info, err := s.Stat(ctx, "dir/obj")
	if err != nil {
		t.Fatalf("Stat after Close: %v", err)
	}
	if info.Name != "dir/obj" || info.Size != int64(len(data)) || info.IsPrefix {
		t.Errorf("Stat after Close = %+v, want name dir/obj, size %d, not a prefix", info, len(data))
	}
	if info.ModTime.IsZero() {
		t.Errorf("Stat after Close: ModTime is zero")
	}
	mustContent(t, s, "dir/obj", data)
	list := listAll(t, s, storage.ListOptions{})
	if len(list) != 1 || list[0].Name != "dir/obj" || list[0].Size != int64(len(data)) || list[0].IsPrefix {
		t.Errorf("List after Close = %+v, want one object dir/obj of %d bytes", list, len(data))
	}

	// An empty object is an object.
	mustWrite(t, s, "empty", nil)
	if info, err := s.Stat(ctx, "empty"); err != nil || info.Size != 0 {
		t.Errorf("Stat(empty) = %+v, %v; want size 0", info, err)
	}
	mustContent(t, s, "empty", nil)
}

func (k *kit) abortLeavesNothing(t *testing.T, s storage.Store) {
	ctx := context.Background()
	// Abort of a new object.
	w, err := s.Write(ctx, "new", storage.WriteOptions{})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if _, err := w.Write(pattern(1, 10_000)); err != nil {
		t.Fatalf("writing: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	mustNotExist(t, s, "new")

	// Abort of a replacement leaves the previous object as it was.
	old := []byte("previous content")
	mustWrite(t, s, "old", old)
	w, err = s.Write(ctx, "old", storage.WriteOptions{})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if _, err := w.Write(pattern(2, 10_000)); err != nil {
		t.Fatalf("writing: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	mustContent(t, s, "old", old)

	// Abort of a conditional write, then the name is still free.
	w, err = s.Write(ctx, "cond", storage.WriteOptions{IfNotExists: true})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if _, err := w.Write([]byte("abandoned")); err != nil {
		t.Fatalf("writing: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	mustNotExist(t, s, "cond")
	if err := storage.WriteAll(ctx, s, "cond", []byte("kept"), storage.WriteOptions{IfNotExists: true}); err != nil {
		t.Fatalf("conditional write after an aborted one: %v", err)
	}
	mustContent(t, s, "cond", []byte("kept"))

	// Abort without writing anything, and Abort twice.
	w, err = s.Write(ctx, "nothing", storage.WriteOptions{})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	_ = w.Abort() // must not panic
	mustNotExist(t, s, "nothing")
	mustListExactly(t, s, []string{"cond", "old"})
}

func (k *kit) cancelledWriteLeavesNothing(t *testing.T, s storage.Store) {
	old := []byte("the previous object")
	mustWrite(t, s, "obj", old)
	for _, cond := range []bool{false, true} {
		t.Run(fmt.Sprintf("IfNotExists=%v", cond), func(t *testing.T) {
			for _, name := range []string{"obj", "fresh"} {
				ctx, cancel := context.WithCancel(context.Background())
				w, err := s.Write(ctx, name, storage.WriteOptions{IfNotExists: cond})
				if err != nil {
					cancel()
					t.Fatalf("Write(%q): %v", name, err)
				}
				if _, err := w.Write(pattern(4, 64<<10)); err != nil {
					t.Fatalf("writing %q before cancel: %v", name, err)
				}
				cancel()
				_, _ = w.Write(pattern(5, 64<<10)) // may or may not fail
				if err := w.Close(); err == nil {
					t.Errorf("Close of %q after cancel = nil, want an error", name)
				}
				_ = w.Abort()
			}
			mustContent(t, s, "obj", old)
			mustNotExist(t, s, "fresh")
			mustListExactly(t, s, []string{"obj"})
		})
	}
}

func (k *kit) overwrite(t *testing.T, s storage.Store) {
	ctx := context.Background()
	for i, data := range [][]byte{
		[]byte("first"),
		pattern(6, 200_000), // longer
		[]byte("short"),     // shorter: no tail of the previous one remains
		nil,                 // empty
		[]byte("last"),
	} {
		mustWrite(t, s, "x/obj", data)
		mustContent(t, s, "x/obj", data)
		info, err := s.Stat(ctx, "x/obj")
		if err != nil {
			t.Fatalf("Stat after write %d: %v", i, err)
		}
		if info.Size != int64(len(data)) {
			t.Errorf("Stat after write %d: size %d, want %d", i, info.Size, len(data))
		}
	}
	mustListExactly(t, s, []string{"x/obj"})
}

func (k *kit) ifNotExists(t *testing.T, s storage.Store) {
	ctx := context.Background()
	cond := storage.WriteOptions{IfNotExists: true}
	if err := storage.WriteAll(ctx, s, "lock", []byte("first"), cond); err != nil {
		t.Fatalf("first conditional write: %v", err)
	}
	if err := storage.WriteAll(ctx, s, "lock", []byte("second"), cond); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("second conditional write = %v, want ErrAlreadyExists", err)
	}
	mustContent(t, s, "lock", []byte("first"))

	// A conditional write started before the object appeared still loses.
	w, err := s.Write(ctx, "late", cond)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	defer w.Abort()
	if _, err := w.Write([]byte("slow writer")); err != nil {
		t.Fatalf("writing: %v", err)
	}
	if err := storage.WriteAll(ctx, s, "late", []byte("fast writer"), cond); err != nil {
		t.Fatalf("fast conditional write: %v", err)
	}
	if err := w.Close(); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("slow conditional Close = %v, want ErrAlreadyExists", err)
	}
	mustContent(t, s, "late", []byte("fast writer"))

	// An unconditional write replaces, and after a delete the name is free.
	mustWrite(t, s, "lock", []byte("replaced"))
	mustContent(t, s, "lock", []byte("replaced"))
	if err := s.Delete(ctx, "lock"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := storage.WriteAll(ctx, s, "lock", []byte("again"), cond); err != nil {
		t.Fatalf("conditional write after delete: %v", err)
	}
	mustContent(t, s, "lock", []byte("again"))

	// Concurrent conditional writers: exactly one wins.
	for round := range 3 {
		name := fmt.Sprintf("race/%d", round)
		const writers = 8
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  = make([]error, writers)
		)
		for i := range writers {
			wg.Go(func() {
				w, err := s.Write(ctx, name, cond)
				if err != nil {
					errs[i] = err
					return
				}
				defer w.Abort()
				if _, err := w.Write(pattern(uint64(100+i), 4096)); err != nil {
					errs[i] = err
					return
				}
				<-start
				errs[i] = w.Close()
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("%s: writers %d and %d both won", name, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, storage.ErrAlreadyExists):
				t.Errorf("%s: writer %d: %v, want nil or ErrAlreadyExists", name, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("%s: no conditional writer won", name)
		}
		mustContent(t, s, name, pattern(uint64(100+winner), 4096))
	}
}

func (k *kit) rangedReads(t *testing.T, s storage.Store) {
	ctx := context.Background()
	data := pattern(7, 1000)
	mustWrite(t, s, "obj", data)
	mustWrite(t, s, "empty", nil)
	for _, tc := range []struct {
		name           string
		offset, length int64
		want           []byte
	}{
		{"obj", 0, -1, data},
		{"obj", 0, 1000, data},
		{"obj", 0, 10, data[:10]},
		{"obj", 500, 100, data[500:600]},
		{"obj", 500, -1, data[500:]},
		{"obj", 999, 1, data[999:]},
		{"obj", 999, -1, data[999:]},
		{"obj", 990, 100, data[990:]},     // clipped
		{"obj", 0, 1 << 40, data},         // clipped
		{"obj", 0, 0, nil},                // zero length
		{"obj", 1000, -1, nil},            // at end
		{"obj", 1000, 5, nil},             // at end
		{"obj", 5000, 10, nil},            // past end
		{"obj", 5000, -1, nil},            // past end
		{"empty", 0, -1, nil},             // zero-length object
		{"empty", 0, 10, nil},             //
		{"empty", 3, -1, nil},             //
		{"obj", 1, 998, data[1:999]},      // inner
		{"obj", 123, 0, nil},              // zero length in the middle
		{"obj", 0, -100, data},            // any negative length reads to the end
		{"obj", 998, 1 << 40, data[998:]}, // clipped near the end
	} {
		r, err := s.Read(ctx, tc.name, tc.offset, tc.length)
		if err != nil {
			t.Errorf("Read(%q, %d, %d): %v", tc.name, tc.offset, tc.length, err)
			continue
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Errorf("Read(%q, %d, %d): reading: %v", tc.name, tc.offset, tc.length, err)
			continue
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("Read(%q, %d, %d) = %d bytes %s, want %d bytes %s",
				tc.name, tc.offset, tc.length, len(got), summary(got), len(tc.want), summary(tc.want))
		}
	}
	if r, err := s.Read(ctx, "obj", -1, 10); !errors.Is(err, storage.ErrInvalidArgument) {
		if r != nil {
			r.Close()
		}
		t.Errorf("Read with a negative offset = %v, want ErrInvalidArgument", err)
	}
	// Two readers of one object at once do not disturb each other.
	r1, err := s.Read(ctx, "obj", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := s.Read(ctx, "obj", 500, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	b1 := make([]byte, 100)
	b2 := make([]byte, 100)
	if _, err := io.ReadFull(r1, b1); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r2, b2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, data[:100]) || !bytes.Equal(b2, data[500:600]) {
		t.Errorf("interleaved readers returned the wrong bytes")
	}
}

// listTree returns the names ListPrefixDelimiter stores. The tricky ones
// sit around '/' (0x2f) in byte order: '!' (0x21), '-' (0x2d) and '.'
// (0x2e) sort before it, '0' (0x30) after it, so a directory "a/" must be
// listed after "a.b" and before "a0".
func (k *kit) listTree() []string {
	names := []string{
		"a!", "a-/x", "a.b", "a/b/c", "a/b.d", "a/bc", "a/b-/e", "a0", "ab",
		"b/x/y/z", "b/z", "c", "c.d/e", "d/e/f/g/h",
	}
	if !k.cfg.FileDirConflicts {
		names = append(names, "a", "a/b", "b/x", "c.d")
	}
	sort.Strings(names)
	return names
}

func (k *kit) listPrefixDelimiter(t *testing.T, s storage.Store) {
	names := k.listTree()
	sizes := map[string]int64{}
	for i, name := range names {
		data := pattern(uint64(i), i*7)
		mustWrite(t, s, name, data)
		sizes[name] = int64(len(data))
	}
	prefixes := []string{"", "a", "a/", "a/b", "a/b/", "a.", "a/b/c", "b/", "b/x/", "c", "d/e/", "z", "a/b/c/", "zz/"}
	startAfters := []string{"", "a", "a/", "a.b", "a/b", "a/b/", "a/b/c", "a/bc", "ab", "b/x", "b/x/y/z", "c.d/", "zzz"}
	for _, delim := range []string{"", "/"} {
		for _, prefix := range prefixes {
			for _, sa := range startAfters {
				opts := storage.ListOptions{Prefix: prefix, Delimiter: delim, StartAfter: sa}
				want := referenceList(names, opts)
				got := listAll(t, s, opts)
				if !sameListing(got, want, sizes) {
					t.Errorf("List(%+v)\n got %s\nwant %s", opts, fmtInfos(got), fmtInfos(want))
				}
			}
		}
	}
	// Spot checks that do not depend on referenceList being right.
	root := listNames(t, s, storage.ListOptions{Delimiter: "/"})
	wantRoot := []string{"a!", "a-/", "a.b", "a/", "a0", "ab", "b/", "c", "c.d/", "d/"}
	if !k.cfg.FileDirConflicts {
		wantRoot = []string{"a", "a!", "a-/", "a.b", "a/", "a0", "ab", "b/", "c", "c.d", "c.d/", "d/"}
	}
	if !slices.Equal(root, wantRoot) {
		t.Errorf("List(delimiter /) = %q, want %q", root, wantRoot)
	}
	// The listing of a prefix with a delimiter never repeats a common
	// prefix, and a prefix entry is listed only if its name is after
	// StartAfter (here "a/" < "a/b", so it is not listed).
	got := listNames(t, s, storage.ListOptions{Delimiter: "/", StartAfter: "a/b"})
	want := []string{"a0", "ab", "b/", "c", "c.d/", "d/"}
	if !k.cfg.FileDirConflicts {
		want = []string{"a0", "ab", "b/", "c", "c.d", "c.d/", "d/"}
	}
	if !slices.Equal(got, want) {
		t.Errorf("List(delimiter /, start after a/b) = %q, want %q", got, want)
	}

	if k.cfg.FileDirConflicts {
		t.Run("Conflicts", func(t *testing.T) { k.conflicts(t, s) })
	}
}

// conflicts checks that a store with file system naming refuses, cleanly,
// an object that would also have to be a directory.
func (k *kit) conflicts(t *testing.T, s storage.Store) {
	ctx := context.Background()
	before := listNames(t, s, storage.ListOptions{})
	for _, name := range []string{
		"c/x",   // "c" is an object
		"a/b",   // "a/b/" holds objects
		"a",     // "a/" holds objects
		"c/x/y", //
	} {
		w, err := s.Write(ctx, name, storage.WriteOptions{})
		if err == nil {
			_, err = w.Write([]byte("conflict"))
			if err == nil {
				err = w.Close()
			}
			_ = w.Abort()
		}
		if err == nil {
			t.Errorf("writing %q, which conflicts with existing names: no error", name)
		}
	}
	if after := listNames(t, s, storage.ListOptions{}); !slices.Equal(before, after) {
		t.Errorf("after refused writes the store holds %q, want %q", after, before)
	}
	mustContent(t, s, "c", pattern(uint64(slices.Index(k.listTree(), "c")), slices.Index(k.listTree(), "c")*7))
}

func (k *kit) listManyPages(t *testing.T, s storage.Store) {
	ctx := context.Background()
	n := k.cfg.ManyObjects
	names := make([]string, n)
	for i := range n {
		// Mostly one flat directory, some nested ones, and names that sort
		// around the directories.
		switch i % 10 {
		case 0:
			names[i] = fmt.Sprintf("many/d%02d/%05d", i%37, i)
		case 1:
			names[i] = fmt.Sprintf("many/d%02d.x%05d", i%37, i)
		default:
			names[i] = fmt.Sprintf("many/%05d", i)
		}
	}
	// Write with a few goroutines: some stores commit slowly (fsync).
	var wg sync.WaitGroup
	const writers = 4
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				if err := storage.WriteAll(ctx, s, names[i], []byte(names[i]), storage.WriteOptions{}); err != nil {
					t.Errorf("writing %s: %v", names[i], err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	mustWrite(t, s, "other", []byte("outside the prefix"))
	sort.Strings(names)

	got := listAll(t, s, storage.ListOptions{Prefix: "many/"})
	if len(got) != n {
		t.Errorf("List returned %d objects, want %d", len(got), n)
	}
	for i := range min(len(got), n) {
		if got[i].Name != names[i] || got[i].Size != int64(len(names[i])) || got[i].IsPrefix {
			t.Fatalf("List entry %d = %+v, want object %q of %d bytes", i, got[i], names[i], len(names[i]))
		}
	}

	// Resuming with StartAfter from any point gives the rest.
	for _, at := range []int{0, 999, 1000, n / 2, n - 2, n - 1} {
		if at < 0 || at >= n {
			continue
		}
		rest := listNames(t, s, storage.ListOptions{Prefix: "many/", StartAfter: names[at]})
		if !slices.Equal(rest, names[at+1:]) {
			t.Errorf("List(start after %q) returned %d names, want the %d after it", names[at], len(rest), n-at-1)
		}
	}

	// An error from fn stops the listing and is returned.
	errStop := errors.New("stop here")
	calls := 0
	err := s.List(ctx, storage.ListOptions{}, func(storage.ObjectInfo) error {
		calls++
		if calls == 10 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Errorf("List with fn failing = %v, want fn's error", err)
	}
	if calls != 10 {
		t.Errorf("fn called %d times, want 10 (no call after its error)", calls)
	}
	// The same with a delimiter.
	calls = 0
	err = s.List(ctx, storage.ListOptions{Prefix: "many/", Delimiter: "/"}, func(storage.ObjectInfo) error {
		calls++
		return errStop
	})
	if !errors.Is(err, errStop) || calls != 1 {
		t.Errorf("delimited List with fn failing = %v after %d calls, want fn's error after 1", err, calls)
	}
	// Delimited listing of the same tree: the 37 directories and the flat
	// objects, in order.
	var want []string
	seen := map[string]bool{}
	for _, name := range names {
		rest := strings.TrimPrefix(name, "many/")
		if i := strings.Index(rest, "/"); i >= 0 {
			p := "many/" + rest[:i+1]
			if !seen[p] {
				seen[p] = true
				want = append(want, p)
			}
			continue
		}
		want = append(want, name)
	}
	if got := listNames(t, s, storage.ListOptions{Prefix: "many/", Delimiter: "/"}); !slices.Equal(got, want) {
		t.Errorf("delimited List returned %d entries, want %d", len(got), len(want))
	}
}

func (k *kit) deleteMissing(t *testing.T, s storage.Store) {
	ctx := context.Background()
	for _, name := range []string{"missing", "dir/missing", "a/b/c"} {
		if err := s.Delete(ctx, name); err != nil {
			t.Errorf("Delete(%q) of a missing object = %v, want nil", name, err)
		}
	}
	mustWrite(t, s, "obj", []byte("x"))
	for range 2 {
		if err := s.Delete(ctx, "obj"); err != nil {
			t.Errorf("Delete(obj) = %v, want nil", err)
		}
	}
	mustNotExist(t, s, "obj")
}

func (k *kit) delete(t *testing.T, s storage.Store) {
	ctx := context.Background()
	for _, name := range []string{"keep", "dir/a", "dir/b", "dir/sub/c", "dirx"} {
		mustWrite(t, s, name, []byte(name))
	}
	for _, name := range []string{"dir/a", "dir/sub/c"} {
		if err := s.Delete(ctx, name); err != nil {
			t.Fatalf("Delete(%q): %v", name, err)
		}
		mustNotExist(t, s, name)
	}
	mustListExactly(t, s, []string{"dir/b", "dirx", "keep"})
	if got := listNames(t, s, storage.ListOptions{Delimiter: "/"}); !slices.Equal(got, []string{"dir/", "dirx", "keep"}) {
		t.Errorf("delimited List after deletes = %q, want [dir/ dirx keep]", got)
	}
	if err := s.Delete(ctx, "dir/b"); err != nil {
		t.Fatalf("Delete(dir/b): %v", err)
	}
	// Once a prefix holds nothing, a delimited listing no longer shows it.
	if got := listNames(t, s, storage.ListOptions{Delimiter: "/"}); !slices.Equal(got, []string{"dirx", "keep"}) {
		t.Errorf("delimited List after emptying dir/ = %q, want [dirx keep]", got)
	}
	// A deleted name can be written again, also below it.
	mustWrite(t, s, "dir/sub/c", []byte("back"))
	mustContent(t, s, "dir/sub/c", []byte("back"))
	mustContent(t, s, "keep", []byte("keep"))
	// Deleting an object while a reader has it open: the reader either
	// keeps its bytes or fails, but never returns other data.
	data := pattern(9, 256<<10)
	mustWrite(t, s, "open", data)
	r, err := s.Read(ctx, "open", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := s.Delete(ctx, "open"); err != nil {
		t.Fatalf("Delete of an object being read: %v", err)
	}
	if got, err := io.ReadAll(r); err == nil && !bytes.Equal(got, data) {
		t.Errorf("reader of a deleted object returned %d wrong bytes without an error", len(got))
	}
	mustNotExist(t, s, "open")
}

func (k *kit) concurrentReadersWriters(t *testing.T, s storage.Store) {
	ctx := context.Background()
	const (
		workers = 6
		objects = 12
	)
	content := func(w, i int) []byte {
		return pattern(uint64(w*1000+i), 1+(w*7919+i*104729)%(96<<10))
	}
	name := func(w, i int) string { return fmt.Sprintf("w%d/obj-%02d", w, i) }
	var (
		mu        sync.Mutex
		committed []string
		contents  = map[string][]byte{}
		wg        sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range objects {
				n, data := name(w, i), content(w, i)
				if err := storage.WriteAll(ctx, s, n, data, storage.WriteOptions{}); err != nil {
					t.Errorf("writing %s: %v", n, err)
					return
				}
				mu.Lock()
				committed = append(committed, n)
				contents[n] = data
				// Read someone else's committed object.
				other := committed[(w*31+i*17)%len(committed)]
				want := contents[other]
				mu.Unlock()
				got, err := storage.ReadAll(ctx, s, other)
				if err != nil {
					t.Errorf("reading %s: %v", other, err)
					return
				}
				if !bytes.Equal(got, want) {
					t.Errorf("reading %s: %d bytes %s, want %d bytes %s", other, len(got), summary(got), len(want), summary(want))
				}
			}
		})
	}
	// Writers replacing one shared object, and readers of it: every read
	// sees one whole version, never a mixture.
	versions := make([][]byte, 4)
	for v := range versions {
		versions[v] = bytes.Repeat([]byte{byte('A' + v)}, 64<<10+v)
	}
	mustWrite(t, s, "shared", versions[0])
	for v := range versions {
		wg.Go(func() {
			for range 5 {
				if err := storage.WriteAll(ctx, s, "shared", versions[v], storage.WriteOptions{}); err != nil {
					t.Errorf("overwriting shared: %v", err)
					return
				}
				got, err := storage.ReadAll(ctx, s, "shared")
				if err != nil {
					t.Errorf("reading shared: %v", err)
					return
				}
				if !slices.ContainsFunc(versions, func(v []byte) bool { return bytes.Equal(v, got) }) {
					t.Errorf("reading shared: %d bytes %s are not one whole version", len(got), summary(got))
				}
			}
		})
	}
	wg.Wait()
	for w := range workers {
		for i := range objects {
			mustContent(t, s, name(w, i), content(w, i))
		}
	}
	if got := listNames(t, s, storage.ListOptions{}); len(got) != workers*objects+1 {
		t.Errorf("List after concurrent writes: %d names, want %d", len(got), workers*objects+1)
	}
}

func (k *kit) cancelledContext(t *testing.T, s storage.Store) {
	mustWrite(t, s, "obj", []byte("content"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Stat(ctx, "obj"); err == nil {
		t.Errorf("Stat with a cancelled context = nil error")
	}
	if r, err := s.Read(ctx, "obj", 0, -1); err == nil {
		_, err = io.ReadAll(r)
		r.Close()
		if err == nil {
			t.Errorf("Read with a cancelled context returned the object without an error")
		}
	}
	called := false
	if err := s.List(ctx, storage.ListOptions{}, func(storage.ObjectInfo) error { called = true; return nil }); err == nil {
		t.Errorf("List with a cancelled context = nil error (fn called: %v)", called)
	}
	if err := s.Delete(ctx, "obj"); err == nil {
		t.Errorf("Delete with a cancelled context = nil error")
	}
	if w, err := s.Write(ctx, "new", storage.WriteOptions{}); err == nil {
		_, _ = w.Write([]byte("x"))
		if err := w.Close(); err == nil {
			t.Errorf("Write with a cancelled context committed")
		}
		_ = w.Abort()
	}
	mustNotExist(t, s, "new")
	// The cancelled Delete may or may not have removed obj; if it is there
	// it is whole.
	if got, err := storage.ReadAll(context.Background(), s, "obj"); err == nil && string(got) != "content" {
		t.Errorf("obj after a cancelled Delete = %q", got)
	}
}

func (k *kit) cancelMidRead(t *testing.T, s storage.Store) {
	const size = 8 << 20
	mustWrite(t, s, "big", pattern(11, size))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := s.Read(ctx, "big", 0, -1)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	defer r.Close()
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatalf("reading the head: %v", err)
	}
	cancel()
	n, err := io.Copy(io.Discard, r)
	if err == nil {
		t.Errorf("reading after cancel returned the remaining %d bytes without an error", n)
	}
	if int64(len(head))+n >= size {
		t.Errorf("reading after cancel returned all %d bytes", size)
	}
	// The store still works.
	mustContent(t, s, "big", pattern(11, size))
}

func (k *kit) cancelMidWrite(t *testing.T, s storage.Store) {
	const chunk = 1 << 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := s.Write(ctx, "big", storage.WriteOptions{})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	gen := newGenerator(12)
	buf := make([]byte, chunk)
	var werr error
	for i := range 16 {
		if i == 4 {
			cancel()
		}
		gen.fill(buf)
		if _, werr = w.Write(buf); werr != nil {
			break
		}
	}
	cerr := w.Close()
	_ = w.Abort()
	if werr == nil && cerr == nil {
		t.Fatalf("a write cancelled after 4 of 16 MiB committed")
	}
	mustNotExist(t, s, "big")
	if got := listNames(t, s, storage.ListOptions{}); len(got) != 0 {
		t.Errorf("List after a cancelled write = %q, want nothing", got)
	}
	// The store, and the name, are still usable.
	data := pattern(13, 3<<20)
	mustWrite(t, s, "big", data)
	mustContent(t, s, "big", data)
}

func (k *kit) invalidNames(t *testing.T, s storage.Store) {
	ctx := context.Background()
	mustWrite(t, s, "ok", []byte("x"))
	for _, name := range []string{
		"", "/", "/a", "a/", "a//b", ".", "..", "./a", "a/.", "a/./b", "../a", "a/..", "a/../b", "../../etc/passwd",
	} {
		if _, err := s.Stat(ctx, name); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidArgument", name, err)
		}
		if r, err := s.Read(ctx, name, 0, -1); !errors.Is(err, storage.ErrInvalidArgument) {
			if r != nil {
				r.Close()
			}
			t.Errorf("Read(%q) = %v, want ErrInvalidArgument", name, err)
		}
		if err := s.Delete(ctx, name); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidArgument", name, err)
		}
		// Write may refuse the name at once or when the data or the
		// commit reaches the store; either way with ErrInvalidArgument.
		w, err := s.Write(ctx, name, storage.WriteOptions{})
		if err == nil {
			_, err = w.Write([]byte("escaped"))
			if err == nil {
				err = w.Close()
			}
			_ = w.Abort()
		}
		if !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("writing %q = %v, want ErrInvalidArgument", name, err)
		}
	}
	// A listing prefix that no valid name can have lists nothing.
	for _, prefix := range []string{"../", "/", "./", "a//", "../../"} {
		var got []string
		err := s.List(ctx, storage.ListOptions{Prefix: prefix}, func(o storage.ObjectInfo) error {
			got = append(got, o.Name)
			return nil
		})
		if err != nil && !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("List(prefix %q) = %v, want nil or ErrInvalidArgument", prefix, err)
		}
		if len(got) != 0 {
			t.Errorf("List(prefix %q) = %q, want nothing", prefix, got)
		}
	}
	mustListExactly(t, s, []string{"ok"})
}

// large streams 256 MiB through the store in 1 MiB chunks from a
// deterministic generator, reads it back and compares SHA-256 hashes.
//
// Memory bound: after a forced GC the kit records HeapInuse as the
// baseline, then samples runtime.MemStats.HeapInuse after every 16th chunk
// written or read, and at the ends of the write, the commit and the read.
// The peak must stay below baseline + Config.LargeHeapLimit (64 MiB by
// default). HeapInuse counts live objects and garbage not yet collected,
// so a store that streams (allocating per chunk or not) stays far below
// it, while one that buffers the object, or a large fraction of it, goes
// above it. Sampling is tied to the amount of data moved, not to time, so
// the check is deterministic in what it can see. It measures this process
// only: a store whose work happens in another process (a plugin) is
// checked on the host's side.
func (k *kit) large(t *testing.T, s storage.Store) {
	if k.cfg.SkipLarge {
		t.Skip("Config.SkipLarge is set")
	}
	const (
		chunk = 1 << 20
		total = 256 << 20
	)
	ctx := context.Background()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseline := ms.HeapInuse
	peak := baseline
	sample := func() {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}

	w, err := s.Write(ctx, "large", storage.WriteOptions{})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	defer w.Abort()
	gen := newGenerator(256)
	buf := make([]byte, chunk)
	wantHash := sha256.New()
	for i := range total / chunk {
		gen.fill(buf)
		wantHash.Write(buf)
		if _, err := w.Write(buf); err != nil {
			t.Fatalf("writing chunk %d: %v", i, err)
		}
		if i%16 == 15 {
			sample()
		}
	}
	sample()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	sample()
	info, err := s.Stat(ctx, "large")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Size != total {
		t.Errorf("Stat: size %d, want %d", info.Size, total)
	}

	r, err := s.Read(ctx, "large", 0, -1)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	defer r.Close()
	gotHash := sha256.New()
	var n int64
	for i := 0; ; i++ {
		m, err := io.ReadFull(r, buf)
		gotHash.Write(buf[:m])
		n += int64(m)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatalf("reading at %d: %v", n, err)
		}
		if i%16 == 15 {
			sample()
		}
	}
	sample()
	if n != total {
		t.Errorf("read %d bytes, want %d", n, total)
	}
	if !bytes.Equal(gotHash.Sum(nil), wantHash.Sum(nil)) {
		t.Errorf("the bytes read back differ from those written")
	}
	if rise := peak - baseline; rise > k.cfg.LargeHeapLimit {
		t.Errorf("heap in use rose by %d MiB while streaming 256 MiB, want at most %d MiB",
			rise>>20, k.cfg.LargeHeapLimit>>20)
	} else {
		t.Logf("heap in use rose by at most %.1f MiB while streaming 256 MiB", float64(rise)/(1<<20))
	}
	// Ranged read deep inside the large object.
	off := int64(200<<20 + 12345)
	r2, err := s.Read(ctx, "large", off, 1000)
	if err != nil {
		t.Fatalf("ranged Read: %v", err)
	}
	defer r2.Close()
	got, err := io.ReadAll(r2)
	if err != nil {
		t.Fatalf("ranged Read: %v", err)
	}
	gen = newGenerator(256)
	for range off / chunk {
		gen.fill(buf)
	}
	gen.fill(buf)
	if want := buf[off%chunk : off%chunk+1000]; !bytes.Equal(got, want) {
		t.Errorf("ranged Read at %d returned the wrong bytes", off)
	}
	if err := s.Delete(ctx, "large"); err != nil {
		t.Errorf("Delete: %v", err)
	}
}
