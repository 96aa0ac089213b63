package cloud

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cairnbackup/cairn/core/cloud/local"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// NodeDirs returns a node's external-IO directory, the root of its
// nodelocal:// URIs. It returns an error for a node it does not know (or
// cannot reach from this process).
type NodeDirs func(nodeID int32) (dir string, err error)

// LocalityParam is the query parameter of a locality-aware URI. Local
// stores accept and ignore it: the caller uses it to pick a locality
// bucket.
const LocalityParam = "COCKROACH_LOCALITY"

// RegisterLocal registers the built-in local schemes:
//
//	nodelocal://<nodeID>/<path>  the directory <path> below dirs(nodeID)
//	nodelocal://self/<path>      the same for node self
//	file:///<abs path>           the absolute directory <abs path>
//
// The path may not contain ".." elements (for nodelocal, it could escape
// the node's directory); "." elements and repeated slashes are cleaned
// away. A nodelocal node ID is a positive decimal integer or "self". A
// file URI has no host. The only query parameter either accepts is
// COCKROACH_LOCALITY; any other is refused by name. All refusals wrap
// storage.ErrInvalidArgument.
func RegisterLocal(r *Registry, self int32, dirs NodeDirs) {
	r.Register("nodelocal", func(ctx context.Context, u *url.URL) (storage.Store, error) {
		return openNodelocal(u, self, dirs)
	})
	r.Register("file", func(ctx context.Context, u *url.URL) (storage.Store, error) {
		return openFile(u)
	})
}

func openNodelocal(u *url.URL, self int32, dirs NodeDirs) (storage.Store, error) {
	if err := checkLocalURL(u); err != nil {
		return nil, err
	}
	var id int32
	switch host := u.Host; {
	case host == "":
		return nil, invalid("nodelocal URI has no node ID (want nodelocal://<node ID>/path or nodelocal://self/path)")
	case host == "self":
		if self <= 0 {
			return nil, invalid("nodelocal://self used where there is no local node")
		}
		id = self
	default:
		n, err := strconv.ParseInt(host, 10, 32)
		if err != nil || n <= 0 || strings.Trim(host, "0123456789") != "" {
			return nil, invalid(fmt.Sprintf("nodelocal node ID %q is not a positive integer or \"self\"", host))
		}
		id = int32(n)
	}
	rel, err := cleanPath(u.Path)
	if err != nil {
		return nil, err
	}
	dir, err := dirs(id)
	if err != nil {
		return nil, fmt.Errorf("finding the directory of node %d: %w", id, err)
	}
	if dir == "" {
		return nil, fmt.Errorf("finding the directory of node %d: node has none: %w", id, storage.ErrNotFound)
	}
	s, err := local.New(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	return s, nil
}

func openFile(u *url.URL) (storage.Store, error) {
	if err := checkLocalURL(u); err != nil {
		return nil, err
	}
	if u.Host != "" {
		return nil, invalid(fmt.Sprintf("file URI has a host %q; want file:///absolute/path", u.Host))
	}
	if !strings.HasPrefix(u.Path, "/") {
		return nil, invalid("file URI needs an absolute path; want file:///absolute/path")
	}
	rel, err := cleanPath(u.Path)
	if err != nil {
		return nil, err
	}
	s, err := local.New(filepath.FromSlash("/" + rel))
	if err != nil {
		return nil, err
	}
	return s, nil
}

// checkLocalURL refuses the parts of a URL a local store has no use for.
func checkLocalURL(u *url.URL) error {
	switch {
	case u.Opaque != "":
		return invalid(fmt.Sprintf("%s URI must be of the form %s://...", u.Scheme, u.Scheme))
	case u.User != nil:
		return invalid(fmt.Sprintf("%s URI must not carry user information", u.Scheme))
	case u.Fragment != "":
		return invalid(fmt.Sprintf("%s URI must not have a fragment", u.Scheme))
	}
	if _, err := storage.ParseParams(u.RawQuery, LocalityParam); err != nil {
		return invalid(fmt.Sprintf("%s URI: %v", u.Scheme, err))
	}
	return nil
}

// cleanPath returns p without leading slash, "." elements or repeated
// slashes, and refuses ".." elements and NUL bytes. "" is the root.
func cleanPath(p string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", invalid("path contains a NUL byte")
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		return "", invalid(fmt.Sprintf("path %q contains \"..\"", p))
	}
	c := path.Clean("/" + p)
	return strings.TrimPrefix(c, "/"), nil
}

func invalid(msg string) error {
	return fmt.Errorf("%s: %w", msg, storage.ErrInvalidArgument)
}
