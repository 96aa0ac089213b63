// Command storage-azure is cairn's storage plugin for Azure Blob Storage:
// azure-blob:// and azure:// URIs (see package azurestore).
package main

import (
	"log/slog"
	"os"

	"github.com/cairnbackup/cairn/plugins/storage-azure/azurestore"
	"github.com/cairnbackup/cairn/sdk/plugin"
)

func main() {
	// JSON on stderr, which the host re-logs under the plugin's name.
	logger := plugin.NewJSONLogger(os.Stderr, slog.LevelInfo)
	plugin.Serve(plugin.ServeConfig{
		Name:         "storage-azure",
		Version:      "0.1.0",
		Storage:      azurestore.Provider{Logger: logger},
		Capabilities: []string{"conditional-write"},
		Logger:       logger,
	})
}
