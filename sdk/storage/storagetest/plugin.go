package storagetest

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/cairnbackup/cairn/sdk/plugin"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/storagerpc"
)

// OverPlugin starts the storage plugin binary (built by the test, e.g.
// in TestMain with `go build`), opens uri in it and returns the store,
// which talks to the plugin over go-plugin's gRPC exactly as cairn's host
// does. The plugin process is stopped when the test ends. Use it in
// Config.NewStore to run the kit over the wire:
//
//	NewStore: func(t *testing.T) storage.Store {
//		return storagetest.OverPlugin(t, bin, "webdav://...")
//	},
//
// Plugin log lines at warning level and above go to the test's stderr.
func OverPlugin(t testing.TB, binary, uri string) storage.Store {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	client := goplugin.NewClient(plugin.ClientConfig(binary, logger))
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("starting plugin %s: %v", binary, err)
	}
	raw, err := rpc.Dispense(plugin.KindStorage)
	if err != nil {
		t.Fatalf("dispensing storage from %s: %v", binary, err)
	}
	c, ok := raw.(*storagerpc.Client)
	if !ok {
		t.Fatalf("dispensing storage from %s: got %T", binary, raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := c.Open(ctx, uri)
	if err != nil {
		t.Fatalf("opening %s in plugin %s: %v", uri, binary, err)
	}
	return s
}

// PrefixedStore returns s with every object kept under prefix (see
// storage.Prefixed), to run the kit on a store that is not at its root.
func PrefixedStore(s storage.Store, prefix string) storage.Store {
	return storage.Prefixed(s, prefix)
}
