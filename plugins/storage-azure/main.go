// Command storage-azure is cairn's storage plugin for Azure Blob Storage:
// azure-blob:// and azure:// URIs (see package azurestore).
package main

import (
	"github.com/cairnbackup/cairn/plugins/storage-azure/azurestore"
	"github.com/cairnbackup/cairn/sdk/plugin"
)

func main() {
	plugin.Serve(plugin.ServeConfig{
		Name:         "storage-azure",
		Version:      "0.1.0",
		Storage:      azurestore.Provider{},
		Capabilities: []string{"conditional-write"},
	})
}
