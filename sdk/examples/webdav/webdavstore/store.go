// Package webdavstore is a storage.Store for WebDAV servers (RFC 4918):
// Nextcloud, ownCloud, Apache mod_dav, nginx's dav module, rclone serve
// webdav. It is the implementation behind the example storage plugin in
// sdk/examples/webdav, written as a third party would write one: it uses
// only cairn's sdk packages and net/http.
//
// # Mapping
//
// An object is a WebDAV resource, and the slashes of its name are
// collections: object "a/b/c" is the resource <root>/a/b/c. So, as on a
// file system, a name cannot be both an object and a prefix of other
// objects followed by "/" (storagetest.Config.FileDirConflicts); such a
// write fails with storage.ErrAlreadyExists and leaves the store as it
// was.
//
//   - Stat and List use PROPFIND with Depth 0 and 1; List walks one
//     collection at a time and sorts each collection's children, which
//     gives the lexical order of the whole names (see List). A collection
//     holding no object is not listed, nor is it a common prefix.
//   - Read is a PROPFIND (a collection is not an object, and some servers
//     answer GET on one with an index page) then a GET with a Range.
//   - Write streams a PUT, through an io.Pipe, to a temporary resource in
//     the collection TempDir at the root, then MOVEs it to its name with
//     Overwrite: T, or with Overwrite: F for WriteOptions.IfNotExists (412
//     becomes storage.ErrAlreadyExists). Parent collections are made with
//     MKCOL just before the MOVE, so an aborted write leaves no
//     collection behind. After the PUT the temporary resource's size is
//     checked against the bytes sent: some server set-ups (PHP behind
//     some FastCGI front ends) silently drop chunked request bodies.
//   - Delete is a PROPFIND, so that a collection is never deleted, then a
//     DELETE; 404 is success.
//
// # Server requirements and known differences
//
//   - TempDir (".cairn-tmp" at the root) is reserved: names under it are
//     refused with storage.ErrInvalidArgument and listings skip it. A
//     write interrupted by a crash can leave a file there; it is never
//     visible and may be deleted at any time no write is running.
//   - An overwrite is as atomic as the server's MOVE. RFC 4918 (9.9.3)
//     says a MOVE onto an existing resource first DELETEs it, and
//     x/net/webdav (hence rclone) and Apache mod_dav do exactly that: for
//     a moment between the two steps the name is missing, and a reader
//     may see storage.ErrNotFound — never a partial or mixed object.
//     nginx renames over the old file atomically. New objects and
//     IfNotExists writes are not affected.
//   - IfNotExists relies on the server checking Overwrite: F and
//     renaming under one lock; x/net/webdav and Apache do (x/net answers
//     423 Locked to a concurrent MOVE of the same name, which is
//     retried).
//   - A collection left empty by deletes stays on the server (deleting it
//     would race with writers into it); it is invisible to List.
//   - Listing memory grows with the number of children of the largest
//     collection (WebDAV has no paged PROPFIND), not with the store.
//
// # Errors and retries
//
// HTTP statuses map to the storage errors as statusError says.
// Idempotent requests (PROPFIND, GET, DELETE, MKCOL) are retried with
// jittered exponential backoff after transport errors, 423, 429 and 5xx;
// a MOVE only after 423, 429 and 503, which mean it was not performed;
// the streaming PUT never, since its body is gone: its failure comes back
// as storage.ErrUnavailable, which the host retries from its own copy.
// Errors name the object and the HTTP status, never the URI's
// credentials.
package webdavstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// TempDir is the collection at the store's root that holds objects being
// written. Its name is reserved.
const TempDir = ".cairn-tmp"

// Store is a storage.Store on one WebDAV collection. It is safe for
// concurrent use.
type Store struct {
	cfg    config
	client *http.Client
	base   string // scheme://host

	// dirs caches absolute paths of collections known to exist, so a
	// write MKCOLs each parent once per store rather than once per write.
	dirs sync.Map
}

var _ storage.Store = (*Store)(nil)

func newStore(cfg config, rt http.RoundTripper) (*Store, error) {
	client, err := httpClient(cfg, rt)
	if err != nil {
		return nil, err
	}
	return &Store{cfg: cfg, client: client, base: cfg.scheme + "://" + cfg.host}, nil
}

// String is the store's URI with its password redacted.
func (s *Store) String() string { return s.cfg.redacted() }

// probe checks that the server answers, and accepts the credentials.
func (s *Store) probe(ctx context.Context) error {
	op := "opening webdav store"
	es, _, err := s.propfind(ctx, op, "at "+s.String(), s.cfg.root, true, "0")
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil // made by the first write
	case err != nil:
		return err
	}
	for _, e := range es {
		if e.path == s.cfg.root && !e.dir {
			return fmt.Errorf("%s at %s: the root is a file, not a collection: %w", op, s, storage.ErrInvalidArgument)
		}
	}
	return nil
}

// Close implements storage.Store. It closes idle connections; the store
// must not be used afterwards.
func (s *Store) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

// checkName enforces the naming rules of package storage, and keeps
// TempDir reserved.
func checkName(op, name string) error {
	if name == "" {
		return fmt.Errorf("%s %q: empty name: %w", op, name, storage.ErrInvalidArgument)
	}
	for i, elem := range strings.Split(name, "/") {
		switch {
		case elem == "" || elem == "." || elem == "..":
			return fmt.Errorf("%s %q: names are slash-separated, without empty, . or .. elements: %w", op, name, storage.ErrInvalidArgument)
		case i == 0 && elem == TempDir:
			return fmt.Errorf("%s %q: %s is reserved for writes in progress: %w", op, name, TempDir, storage.ErrInvalidArgument)
		}
	}
	return nil
}

func check(ctx context.Context, op, name string) error {
	if err := checkName(op, name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	return nil
}

// Stat implements storage.Store. A collection is not an object.
func (s *Store) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	const op = "stating"
	if err := check(ctx, op, name); err != nil {
		return storage.ObjectInfo{}, err
	}
	e, err := s.statObject(ctx, op, name)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return storage.ObjectInfo{Name: name, Size: e.size, ModTime: e.mod}, nil
}

// statObject is statPath for an object: a collection is ErrNotFound.
func (s *Store) statObject(ctx context.Context, op, name string) (entry, error) {
	e, err := s.statPath(ctx, op, name, s.abs(name))
	if err == nil && e.dir {
		err = fmt.Errorf("%s %s: a collection, not an object: %w", op, name, storage.ErrNotFound)
	}
	return e, err
}

// statPath is a PROPFIND with Depth 0 of the absolute path abs.
//
// Servers differ when an ancestor of abs is a file: most answer 404, but
// x/net/webdav answers 405 and others 409. Those two statuses also mean
// other things, so they count as "not found" only once a PROPFIND of the
// parent shows that the parent is missing or is a file.
func (s *Store) statPath(ctx context.Context, op, name, abs string) (entry, error) {
	es, status, err := s.propfind(ctx, op, name, abs, false, "0")
	if err == nil {
		for _, e := range es {
			if e.path == abs {
				return e, nil
			}
		}
		switch len(es) {
		case 0:
			// x/net/webdav answers an empty 200 when the resource vanishes
			// between its checks.
			return entry{}, fmt.Errorf("%s %s: %w", op, name, storage.ErrNotFound)
		case 1: // a server that answers with another spelling of the path
			es[0].path = abs
			return es[0], nil
		}
		return entry{}, fmt.Errorf("%s %s: the PROPFIND answer does not describe it: %w", op, name, storage.ErrUnavailable)
	}
	if status == http.StatusMethodNotAllowed || status == http.StatusConflict {
		if parent, ok := parentOf(abs); ok && len(parent) >= len(s.cfg.root) {
			pe, perr := s.statPath(ctx, op, name, parent)
			if errors.Is(perr, storage.ErrNotFound) || (perr == nil && !pe.dir) {
				return entry{}, fmt.Errorf("%s %s: a parent is not a collection: %w", op, name, storage.ErrNotFound)
			}
		}
	}
	return entry{}, err
}

// Read implements storage.Store. It streams the body of a GET; closing
// the reader, or cancelling ctx, ends the request.
func (s *Store) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	const op = "reading"
	if err := check(ctx, op, name); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("%s %s: negative offset %d: %w", op, name, offset, storage.ErrInvalidArgument)
	}
	e, err := s.statObject(ctx, op, name)
	if err != nil {
		return nil, err
	}
	if length == 0 || offset >= e.size {
		return io.NopCloser(strings.NewReader("")), nil
	}
	var rng string
	switch {
	case length > 0 && offset > (1<<63-1)-length:
		rng = "bytes=" + strconv.FormatInt(offset, 10) + "-"
	case length > 0:
		rng = "bytes=" + strconv.FormatInt(offset, 10) + "-" + strconv.FormatInt(offset+length-1, 10)
	case offset > 0:
		rng = "bytes=" + strconv.FormatInt(offset, 10) + "-"
	}
	target := s.url(s.abs(name), false)
	resp, err := s.send(ctx, idempotent, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return nil, err
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		// Ask for the bytes as stored, not re-encoded.
		req.Header.Set("Accept-Encoding", "identity")
		return req, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, name, err)
	}
	var body io.Reader = resp.Body
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		// The server ignored the Range: skip to offset ourselves.
		if offset > 0 {
			if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
				resp.Body.Close()
				if err == io.EOF {
					return io.NopCloser(strings.NewReader("")), nil
				}
				return nil, fmt.Errorf("%s %s: skipping to offset %d: %w", op, name, offset, err)
			}
		}
	case http.StatusRequestedRangeNotSatisfiable:
		drain(resp) // the object is shorter than offset
		return io.NopCloser(strings.NewReader("")), nil
	default:
		return nil, statusError(op, name, resp)
	}
	if length > 0 {
		body = io.LimitReader(body, length)
	}
	return &reader{name: name, r: body, c: resp.Body}, nil
}

// reader is the body of a GET, with its errors named.
type reader struct {
	name string
	r    io.Reader
	c    io.Closer
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("reading %s: %w", r.name, err)
	}
	return n, err
}

func (r *reader) Close() error { return r.c.Close() }

// Delete implements storage.Store. It never deletes a collection: a name
// that is only a prefix of other objects is not an object.
func (s *Store) Delete(ctx context.Context, name string) error {
	const op = "deleting"
	if err := check(ctx, op, name); err != nil {
		return err
	}
	e, err := s.statPath(ctx, op, name, s.abs(name))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil
	case err != nil:
		return err
	case e.dir:
		return nil
	}
	return s.delete(ctx, op, name, s.abs(name), false)
}

// delete DELETEs abs; 404 is success.
func (s *Store) delete(ctx context.Context, op, name, abs string, collection bool) error {
	target := s.url(abs, collection)
	resp, err := s.send(ctx, idempotent, func() (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodDelete, target, nil)
	})
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent, http.StatusAccepted, http.StatusNotFound:
		drain(resp)
		return nil
	}
	return statusError(op, name, resp)
}

// children lists the collection rel ("" or ending in "/"), sorted by
// key. A missing collection, or a file, has no children.
func (s *Store) children(ctx context.Context, op, rel string) ([]child, error) {
	abs := s.abs(rel)
	es, status, err := s.propfind(ctx, op, rel, abs, true, "1")
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, nil
	case err != nil && (status == http.StatusMethodNotAllowed || status == http.StatusConflict):
		// Perhaps a file on the way (see statPath).
		if e, serr := s.statPath(ctx, op, rel, abs); errors.Is(serr, storage.ErrNotFound) || (serr == nil && !e.dir) {
			return nil, nil
		}
		return nil, err
	case err != nil:
		return nil, err
	}
	var out []child
	for _, e := range es {
		if e.path == abs {
			if !e.dir {
				return nil, nil
			}
			continue
		}
		dir, base, ok := cutLast(e.path)
		if !ok || dir != abs || base == "" || base == "." || base == ".." || strings.Contains(base, "/") {
			continue // not a child: a server's oddity, or a name cairn could not have written
		}
		if rel == "" && base == TempDir {
			continue
		}
		key := base
		if e.dir {
			key += "/"
		}
		out = append(out, child{entry: e, name: base, key: key})
	}
	slices.SortFunc(out, func(a, b child) int { return strings.Compare(a.key, b.key) })
	return out, nil
}

// child is one member of a collection. key is its name, followed by "/"
// for a collection: sorting by key sorts the whole names below it.
type child struct {
	entry
	name, key string
}

func cutLast(p string) (dir, base string, ok bool) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", "", false
	}
	return p[:i], p[i+1:], true
}

// hasObject reports whether the collection rel ("a/b/") holds an object
// at any depth. It stops at the first one found.
func (s *Store) hasObject(ctx context.Context, op, rel string) (bool, error) {
	kids, err := s.children(ctx, op, rel)
	if err != nil {
		return false, err
	}
	for _, k := range kids {
		if !k.dir {
			return true, nil
		}
	}
	for _, k := range kids {
		if ok, err := s.hasObject(ctx, op, rel+k.key); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// ensureCollection makes the collection abs, and its missing parents,
// with MKCOL. A file in the way is ErrAlreadyExists.
func (s *Store) ensureCollection(ctx context.Context, op, name, abs string) error {
	if abs == "" {
		return nil
	}
	if _, ok := s.dirs.Load(abs); ok {
		return nil
	}
	for attempt := 0; ; attempt++ {
		status, err := s.mkcol(ctx, op, name, abs)
		switch {
		case err != nil:
			return err
		case status == http.StatusCreated:
		case status == http.StatusMethodNotAllowed:
			// Something exists there already: a collection, or a file.
			e, err := s.statPath(ctx, op, name, abs)
			if errors.Is(err, storage.ErrNotFound) || (err == nil && !e.dir) {
				return fmt.Errorf("%s %s: an object is in the way of collection %s: %w", op, name, s.rel(abs), storage.ErrAlreadyExists)
			}
			if err != nil {
				return err
			}
		case status == http.StatusConflict && attempt == 0:
			// The parent is missing.
			parent, ok := parentOf(abs)
			if !ok {
				return fmt.Errorf("%s %s: making collection %s: server answered 409: %w", op, name, s.rel(abs), storage.ErrInvalidArgument)
			}
			if err := s.ensureCollection(ctx, op, name, parent); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("%s %s: making collection %s: server answered %d: %w", op, name, s.rel(abs), status, storage.ErrAlreadyExists)
		}
		s.dirs.Store(abs, struct{}{})
		return nil
	}
}

// mkcol returns the status of a MKCOL of abs, or the mapped error for a
// status that is neither 201, 405 nor 409.
func (s *Store) mkcol(ctx context.Context, op, name, abs string) (int, error) {
	target := s.url(abs, true)
	resp, err := s.send(ctx, idempotent, func() (*http.Request, error) {
		return http.NewRequestWithContext(ctx, "MKCOL", target, nil)
	})
	if err != nil {
		return 0, fmt.Errorf("%s %s: making collection %s: %w", op, name, s.rel(abs), err)
	}
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusMethodNotAllowed, http.StatusConflict:
		drain(resp)
		return resp.StatusCode, nil
	}
	return 0, statusError(op, name+": making collection "+s.rel(abs), resp)
}

// rel is abs relative to the root, for messages.
func (s *Store) rel(abs string) string {
	if r, ok := strings.CutPrefix(abs, s.cfg.root+"/"); ok {
		return r
	}
	return abs
}

// tempName returns a fresh absolute path in TempDir.
func (s *Store) tempName() string {
	var b [16]byte
	rand.Read(b[:])
	return s.abs(TempDir) + "/" + hex.EncodeToString(b[:])
}
