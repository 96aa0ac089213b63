// Command storage-local is cairn's built-in file:// storage served as a
// plugin: the same core/cloud/local store, out of process. It exists so
// the plugin path is exercised end to end by a store whose behaviour is
// known, and as the model of a storage plugin's main. Installed in the
// plugin directory, it takes file:// over from the built-in store.
package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/cairnbackup/cairn/core/cloud"
	"github.com/cairnbackup/cairn/sdk/plugin"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0"

// provider opens file:// URIs with the rules of the built-in store.
type provider struct{ reg *cloud.Registry }

var _ storage.Provider = provider{}

func (provider) Schemes() []string { return []string{"file"} }

func (p provider) Open(ctx context.Context, uri string) (storage.Store, error) {
	u, err := url.Parse(uri)
	if err != nil || !strings.EqualFold(u.Scheme, "file") {
		return nil, fmt.Errorf("opening a store: storage-local serves file:// URIs only: %w", storage.ErrInvalidArgument)
	}
	return p.reg.Open(ctx, uri)
}

func main() {
	reg := cloud.NewRegistry()
	cloud.RegisterLocal(reg, 0, func(int32) (string, error) {
		return "", fmt.Errorf("storage-local serves no nodelocal:// URIs: %w", storage.ErrInvalidArgument)
	})
	plugin.Serve(plugin.ServeConfig{
		Name: "storage-local", Version: version,
		Storage:      provider{reg: reg},
		Capabilities: []string{"conditional-write"},
	})
}
