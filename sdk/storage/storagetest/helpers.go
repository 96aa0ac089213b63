package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// generator is a deterministic byte source (splitmix64), so that large
// objects need not be kept in memory to be checked.
type generator struct{ state uint64 }

func newGenerator(seed uint64) *generator { return &generator{state: seed} }

func (g *generator) next() uint64 {
	g.state += 0x9e3779b97f4a7c15
	z := g.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (g *generator) fill(b []byte) {
	for len(b) >= 8 {
		v := g.next()
		b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		b[4], b[5], b[6], b[7] = byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
		b = b[8:]
	}
	if len(b) > 0 {
		v := g.next()
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
	}
}

// pattern returns n deterministic bytes for seed.
func pattern(seed uint64, n int) []byte {
	b := make([]byte, n)
	newGenerator(seed).fill(b)
	return b
}

func summary(b []byte) string {
	if len(b) <= 16 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q...%q", b[:8], b[len(b)-8:])
}

func mustWrite(t *testing.T, s storage.Store, name string, data []byte) {
	t.Helper()
	if err := storage.WriteAll(context.Background(), s, name, data, storage.WriteOptions{}); err != nil {
		t.Fatalf("writing %s: %v", name, err)
	}
}

func mustContent(t *testing.T, s storage.Store, name string, want []byte) {
	t.Helper()
	got, err := storage.ReadAll(context.Background(), s, name)
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("reading %s: got %d bytes %s, want %d bytes %s", name, len(got), summary(got), len(want), summary(want))
	}
}

// mustNotExist checks that name is invisible to Stat, Read and List.
func mustNotExist(t *testing.T, s storage.Store, name string) {
	t.Helper()
	ctx := context.Background()
	if info, err := s.Stat(ctx, name); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat(%q) = %+v, %v; want ErrNotFound", name, info, err)
	}
	if r, err := s.Read(ctx, name, 0, -1); !errors.Is(err, storage.ErrNotFound) {
		if r != nil {
			r.Close()
		}
		t.Errorf("Read(%q) = %v, want ErrNotFound", name, err)
	}
	for _, n := range listNames(t, s, storage.ListOptions{Prefix: name}) {
		if n == name {
			t.Errorf("List(prefix %q) shows %q", name, name)
		}
	}
}

func mustListExactly(t *testing.T, s storage.Store, want []string) {
	t.Helper()
	if got := listNames(t, s, storage.ListOptions{}); !slices.Equal(got, want) {
		t.Errorf("List = %q, want %q", got, want)
	}
}

func listAll(t *testing.T, s storage.Store, opts storage.ListOptions) []storage.ObjectInfo {
	t.Helper()
	var out []storage.ObjectInfo
	if err := s.List(context.Background(), opts, func(o storage.ObjectInfo) error {
		out = append(out, o)
		return nil
	}); err != nil {
		t.Fatalf("List(%+v): %v", opts, err)
	}
	return out
}

func listNames(t *testing.T, s storage.Store, opts storage.ListOptions) []string {
	t.Helper()
	var out []string
	for _, o := range listAll(t, s, opts) {
		out = append(out, o.Name)
	}
	return out
}

// referenceList is the obviously correct listing of a set of names: filter
// by prefix, roll up at the first delimiter after the prefix, keep entries
// whose name is after StartAfter, sort and drop duplicates.
func referenceList(names []string, opts storage.ListOptions) []storage.ObjectInfo {
	var out []storage.ObjectInfo
	seen := map[string]bool{}
	for _, name := range names {
		if !strings.HasPrefix(name, opts.Prefix) {
			continue
		}
		entry := storage.ObjectInfo{Name: name}
		if opts.Delimiter != "" {
			rest := name[len(opts.Prefix):]
			if i := strings.Index(rest, opts.Delimiter); i >= 0 {
				entry = storage.ObjectInfo{Name: opts.Prefix + rest[:i+len(opts.Delimiter)], IsPrefix: true}
			}
		}
		if entry.Name <= opts.StartAfter || seen[entry.Name] {
			continue
		}
		seen[entry.Name] = true
		out = append(out, entry)
	}
	slices.SortFunc(out, func(a, b storage.ObjectInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// sameListing compares names, IsPrefix and, for objects, sizes.
func sameListing(got, want []storage.ObjectInfo, sizes map[string]int64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Name != want[i].Name || got[i].IsPrefix != want[i].IsPrefix {
			return false
		}
		if !got[i].IsPrefix && got[i].Size != sizes[got[i].Name] {
			return false
		}
	}
	return true
}

func fmtInfos(infos []storage.ObjectInfo) string {
	var b strings.Builder
	b.WriteString("[")
	for i, o := range infos {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(o.Name)
	}
	b.WriteString("]")
	return b.String()
}
