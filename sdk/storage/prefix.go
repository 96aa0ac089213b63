package storage

import (
	"context"
	"io"
	"strings"
)

// Prefixed returns a Store that keeps every object of s under the
// directory prefix (a valid object name, e.g. "tenant-7/backups"): name n
// is prefix+"/"+n in s. Closing it closes s. Names are checked by s, on
// their prefixed form, so invalid names stay invalid.
func Prefixed(s Store, prefix string) Store {
	return &prefixed{s: s, p: strings.TrimSuffix(prefix, "/") + "/"}
}

type prefixed struct {
	s Store
	p string
}

var _ Store = (*prefixed)(nil)

func (ps *prefixed) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	info, err := ps.s.Stat(ctx, ps.p+name)
	info.Name = strings.TrimPrefix(info.Name, ps.p)
	return info, err
}

func (ps *prefixed) List(ctx context.Context, opts ListOptions, fn func(ObjectInfo) error) error {
	inner := ListOptions{Prefix: ps.p + opts.Prefix, Delimiter: opts.Delimiter}
	if opts.StartAfter != "" {
		inner.StartAfter = ps.p + opts.StartAfter
	}
	return ps.s.List(ctx, inner, func(o ObjectInfo) error {
		o.Name = strings.TrimPrefix(o.Name, ps.p)
		return fn(o)
	})
}

func (ps *prefixed) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	return ps.s.Read(ctx, ps.p+name, offset, length)
}

func (ps *prefixed) Write(ctx context.Context, name string, opts WriteOptions) (Writer, error) {
	return ps.s.Write(ctx, ps.p+name, opts)
}

func (ps *prefixed) Delete(ctx context.Context, name string) error {
	return ps.s.Delete(ctx, ps.p+name)
}

func (ps *prefixed) Close() error { return ps.s.Close() }

// WriteFile implements FileWriter, with s's own when it has one.
func (ps *prefixed) WriteFile(ctx context.Context, name, path string, opts WriteOptions) error {
	return WriteFile(ctx, ps.s, ps.p+name, path, opts)
}

// ReadFile implements FileReader, with s's own when it has one.
func (ps *prefixed) ReadFile(ctx context.Context, name, path string) (int64, error) {
	return ReadFile(ctx, ps.s, ps.p+name, path)
}
