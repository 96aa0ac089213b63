// Command panicky is a storage plugin for pluginhost's tests: an
// in-memory store (mem://) whose Stat panics on the name "panic", and a
// file store (crashy:///dir) that dies right after committing the first
// WriteFile of a name under "die-after-commit/", before it answers.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairnbackup/cairn/core/cloud/local"
	"github.com/cairnbackup/cairn/sdk/plugin"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/memstore"
)

type provider struct{}

func (provider) Schemes() []string { return []string{"mem", "crashy"} }

func (provider) Open(_ context.Context, uri string) (storage.Store, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", storage.ErrInvalidArgument, err)
	}
	if u.Scheme == "crashy" {
		s, err := local.New(u.Path)
		if err != nil {
			return nil, err
		}
		return crashy{Store: s, root: u.Path}, nil
	}
	return panicky{memstore.New()}, nil
}

type panicky struct{ storage.Store }

func (p panicky) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if name == "panic" {
		panic("asked to panic")
	}
	return p.Store.Stat(ctx, name)
}

type crashy struct {
	*local.Store
	root string
}

func (c crashy) WriteFile(ctx context.Context, name, path string, opts storage.WriteOptions) error {
	if err := c.Store.WriteFile(ctx, name, path, opts); err != nil {
		return err
	}
	return c.afterCommit(name)
}

func (c crashy) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	w, err := c.Store.Write(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	return crashyWriter{Writer: w, c: c, name: name}, nil
}

type crashyWriter struct {
	storage.Writer
	c    crashy
	name string
}

func (w crashyWriter) Close() error {
	if err := w.Writer.Close(); err != nil {
		return err
	}
	return w.c.afterCommit(w.name)
}

// afterCommit exits the process the first time a name under
// "die-after-commit/" is committed.
func (c crashy) afterCommit(name string) error {
	if !strings.HasPrefix(name, "die-after-commit/") {
		return nil
	}
	marker := filepath.Join(c.root, ".died-"+filepath.Base(name))
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		f.Close()
		os.Exit(7) // committed, never answered
	} else if !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

func main() {
	plugin.Serve(plugin.ServeConfig{Name: "panicky", Version: "0.0.1", Storage: provider{}})
}
