// Command panicky is a storage plugin for pluginhost's tests: an
// in-memory store whose Stat panics on the name "panic".
package main

import (
	"context"

	"github.com/cairnbackup/cairn/sdk/plugin"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/memstore"
)

type provider struct{}

func (provider) Schemes() []string { return []string{"mem"} }

func (provider) Open(context.Context, string) (storage.Store, error) {
	return panicky{memstore.New()}, nil
}

type panicky struct{ storage.Store }

func (p panicky) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if name == "panic" {
		panic("asked to panic")
	}
	return p.Store.Stat(ctx, name)
}

func main() {
	plugin.Serve(plugin.ServeConfig{Name: "panicky", Version: "0.0.1", Storage: provider{}})
}
