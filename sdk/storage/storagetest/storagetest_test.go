package storagetest_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/memstore"
	"github.com/cairnbackup/cairn/sdk/storage/storagetest"
)

// mutantEnv selects, in a child test process, the broken store to run the
// kit against.
const mutantEnv = "STORAGETEST_MUTANT"

// mutant wraps a memstore and breaks one rule of the contract.
type mutant struct {
	storage.Store
	bug string
}

func (m *mutant) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if m.bug == "notfound-untyped" {
		info, err := m.Store.Stat(ctx, name)
		if errors.Is(err, storage.ErrNotFound) {
			err = errors.New("no such object")
		}
		return info, err
	}
	return m.Store.Stat(ctx, name)
}

func (m *mutant) List(ctx context.Context, opts storage.ListOptions, fn func(storage.ObjectInfo) error) error {
	switch m.bug {
	case "list-unsorted":
		var all []storage.ObjectInfo
		if err := m.Store.List(ctx, opts, func(o storage.ObjectInfo) error { all = append(all, o); return nil }); err != nil {
			return err
		}
		slices.Reverse(all)
		for _, o := range all {
			if err := fn(o); err != nil {
				return err
			}
		}
		return nil
	case "list-ignores-fn-error":
		var first error
		err := m.Store.List(ctx, opts, func(o storage.ObjectInfo) error {
			if err := fn(o); err != nil && first == nil {
				first = err
			}
			return nil
		})
		if first != nil {
			return first
		}
		return err
	case "list-ignores-delimiter":
		opts.Delimiter = ""
	case "list-ignores-startafter":
		opts.StartAfter = ""
	}
	return m.Store.List(ctx, opts, fn)
}

func (m *mutant) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	switch m.bug {
	case "read-ignores-ctx":
		ctx = context.WithoutCancel(ctx)
	case "read-ignores-length":
		length = -1
	}
	return m.Store.Read(ctx, name, offset, length)
}

func (m *mutant) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	switch m.bug {
	case "write-ignores-ifnotexists":
		opts.IfNotExists = false
	case "write-ignores-ctx":
		ctx = context.WithoutCancel(ctx)
	case "write-cleans-names":
		if name != "" {
			name = strings.TrimPrefix(path.Clean(name), "/")
		}
	}
	w, err := m.Store.Write(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	if m.bug == "abort-commits" {
		return abortCommits{w}, nil
	}
	return w, nil
}

type abortCommits struct{ storage.Writer }

func (w abortCommits) Abort() error { _ = w.Writer.Close(); return nil }

func (m *mutant) Delete(ctx context.Context, name string) error {
	if m.bug == "delete-missing-errors" {
		if _, err := m.Store.Stat(ctx, name); errors.Is(err, storage.ErrNotFound) {
			return err
		}
	}
	return m.Store.Delete(ctx, name)
}

// WriteFile makes every mutant a storage.FileWriter, so that the kit's
// WriteFile case runs on it.
func (m *mutant) WriteFile(ctx context.Context, name, path string, opts storage.WriteOptions) error {
	switch m.bug {
	case "writefile-ignores-ifnotexists":
		opts.IfNotExists = false
	case "writefile-removes-source":
		defer os.Remove(path)
	}
	return storage.CopyFile(ctx, m, name, path, opts)
}

// ReadFile makes every mutant a storage.FileReader.
func (m *mutant) ReadFile(ctx context.Context, name, path string) (int64, error) {
	n, err := storage.CopyToFile(ctx, m, name, path)
	if m.bug == "readfile-leaves-file" && err != nil {
		os.WriteFile(path, nil, 0o600)
	}
	return n, err
}

// mutants maps each bug to a subtest of the kit that must catch it.
var mutants = map[string]string{
	"notfound-untyped":              "NotFound",
	"list-unsorted":                 "ListPrefixDelimiter",
	"list-ignores-fn-error":         "ListManyPages",
	"list-ignores-delimiter":        "ListPrefixDelimiter",
	"list-ignores-startafter":       "ListPrefixDelimiter",
	"read-ignores-ctx":              "CancelMidRead",
	"read-ignores-length":           "RangedReads",
	"write-ignores-ifnotexists":     "IfNotExists",
	"write-ignores-ctx":             "CancelledWriteLeavesNothing",
	"write-cleans-names":            "InvalidNames",
	"abort-commits":                 "AbortLeavesNothing",
	"delete-missing-errors":         "DeleteMissing",
	"writefile-ignores-ifnotexists": "WriteFile",
	"writefile-removes-source":      "WriteFile",
	"readfile-leaves-file":          "ReadFile",
	// memstore keeps objects in memory, so it must fail the memory bound.
	"buffers-everything": "Large256MiB",
}

// TestKitCatchesMutants runs the kit, in a child process, against stores
// that each break one rule, and checks that the subtest meant to catch
// the bug fails.
func TestKitCatchesMutants(t *testing.T) {
	if bug := os.Getenv(mutantEnv); bug != "" {
		storagetest.Run(t, storagetest.Config{
			NewStore: func(t *testing.T) storage.Store {
				return &mutant{Store: memstore.New(), bug: bug}
			},
			SkipLarge: bug != "buffers-everything",
		})
		return
	}
	for bug, catcher := range mutants {
		t.Run(bug, func(t *testing.T) {
			if bug == "buffers-everything" && testing.Short() {
				t.Skip("holds 256 MiB in memory")
			}
			// The child runs the whole kit, so a bug that trips the
			// catcher must not crash the kit before it gets there.
			cmd := exec.Command(os.Args[0], "-test.run=^TestKitCatchesMutants$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), mutantEnv+"="+bug)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the kit passed a store with bug %q", bug)
			}
			if want := "--- FAIL: TestKitCatchesMutants/" + catcher + " "; !strings.Contains(string(out), want) {
				t.Errorf("bug %q: subtest %s did not fail; output:\n%s", bug, catcher, out)
			}
		})
	}
}

// TestMemstorePasses is the control for TestKitCatchesMutants: the
// unbroken wrapper passes.
func TestMemstorePasses(t *testing.T) {
	storagetest.Run(t, storagetest.Config{
		NewStore:  func(t *testing.T) storage.Store { return &mutant{Store: memstore.New()} },
		SkipLarge: true,
	})
}
