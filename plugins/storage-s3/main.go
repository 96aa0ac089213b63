// Command storage-s3 is cairn's storage plugin for s3:// URIs: Amazon S3
// and S3-compatible services. See package s3store for the URI parameters.
package main

import (
	"log/slog"
	"os"

	"github.com/cairnbackup/cairn/plugins/storage-s3/s3store"
	"github.com/cairnbackup/cairn/sdk/plugin"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0"

func main() {
	// JSON on stderr, which the host re-logs under the plugin's name.
	logger := plugin.NewJSONLogger(os.Stderr, slog.LevelInfo)
	plugin.Serve(plugin.ServeConfig{
		Name: "storage-s3", Version: version,
		Storage:      s3store.Provider{Logger: logger},
		Capabilities: []string{"conditional-write", "ranged-read"},
		Logger:       logger,
	})
}
