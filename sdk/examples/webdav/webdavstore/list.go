package webdavstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// List implements storage.Store.
//
// WebDAV has no listing of a prefix, only of a collection's children, in
// no particular order. List starts at the deepest collection the prefix
// names ("a/b/" for prefix "a/b/c"), sorts each collection's children by
// name followed by "/" for a collection, and walks depth first. Every
// name below collection "d/" starts with "d/", and no sibling of "d/" can
// be "d" (a file and a collection cannot share a name), so the walk
// yields whole names in lexical byte order: "a.b" < "a/..." < "a0".
//
// With Delimiter "/", a child collection is one common prefix, listed
// only when it holds an object at some depth; it is not entered. Any
// other delimiter rolls up the names of the full walk. StartAfter prunes
// the walk: a collection "d/" is skipped when StartAfter is at or after
// it without starting with it, since then every name below is before
// StartAfter.
func (s *Store) List(ctx context.Context, opts storage.ListOptions, fn func(storage.ObjectInfo) error) error {
	const op = "listing"
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, opts.Prefix, err)
	}
	dir, partial := "", opts.Prefix
	if i := strings.LastIndexByte(opts.Prefix, '/'); i >= 0 {
		dir, partial = opts.Prefix[:i+1], opts.Prefix[i+1:]
		// A prefix whose collection part no valid name can have lists
		// nothing; nor does TempDir.
		if checkName(op, dir[:len(dir)-1]) != nil {
			return nil
		}
	}
	l := lister{s: s, ctx: ctx, opts: opts}
	switch opts.Delimiter {
	case "/":
		return l.level(dir, partial, fn)
	case "":
		return l.walk(dir, partial, fn)
	}
	var last string
	d := opts.Delimiter
	return l.walk(dir, partial, func(o storage.ObjectInfo) error {
		rest := o.Name[len(opts.Prefix):]
		i := strings.Index(rest, d)
		if i < 0 {
			return fn(o)
		}
		// All names rolling up to one common prefix are adjacent in the
		// walk's order, so remembering the last one removes duplicates.
		p := opts.Prefix + rest[:i+len(d)]
		if p == last || p <= opts.StartAfter {
			return nil
		}
		last = p
		return fn(storage.ObjectInfo{Name: p, IsPrefix: true})
	})
}

type lister struct {
	s    *Store
	ctx  context.Context
	opts storage.ListOptions
}

// walk calls fn for every object below collection dir ("" or "x/y/")
// whose name after dir starts with partial and is after StartAfter.
func (l *lister) walk(dir, partial string, fn func(storage.ObjectInfo) error) error {
	kids, err := l.s.children(l.ctx, "listing", dir)
	if err != nil {
		return err
	}
	sa := l.opts.StartAfter
	for _, k := range kids {
		if !strings.HasPrefix(k.name, partial) {
			continue
		}
		key := dir + k.key
		if k.dir {
			if key <= sa && !strings.HasPrefix(sa, key) {
				continue
			}
			if err := l.walk(key, "", fn); err != nil {
				return err
			}
			continue
		}
		if key <= sa {
			continue
		}
		if err := fn(storage.ObjectInfo{Name: key, Size: k.size, ModTime: k.mod}); err != nil {
			return err
		}
	}
	return nil
}

// level is the listing with Delimiter "/": the objects in dir, and its
// collections that hold objects as common prefixes.
func (l *lister) level(dir, partial string, fn func(storage.ObjectInfo) error) error {
	kids, err := l.s.children(l.ctx, "listing", dir)
	if err != nil {
		return err
	}
	for _, k := range kids {
		key := dir + k.key
		if !strings.HasPrefix(k.name, partial) || key <= l.opts.StartAfter {
			continue
		}
		info := storage.ObjectInfo{Name: key, Size: k.size, ModTime: k.mod}
		if k.dir {
			ok, err := l.s.hasObject(l.ctx, "listing", key)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			info = storage.ObjectInfo{Name: key, IsPrefix: true}
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}
