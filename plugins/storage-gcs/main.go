// Command storage-gcs is cairn's Google Cloud Storage plugin: gs:// URIs
// served by package gcsstore over the plugin protocol.
package main

import (
	"log/slog"
	"os"

	"github.com/cairnbackup/cairn/plugins/storage-gcs/gcsstore"
	"github.com/cairnbackup/cairn/sdk/plugin"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0"

func main() {
	// JSON on stderr, which the host re-logs under the plugin's name.
	logger := plugin.NewJSONLogger(os.Stderr, slog.LevelInfo)
	plugin.Serve(plugin.ServeConfig{
		Name: "storage-gcs", Version: version,
		Storage:      gcsstore.Provider{Logger: logger},
		Capabilities: []string{"conditional-write"},
		Logger:       logger,
	})
}
