package main_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/cairnbackup/cairn/internal/testservers"
	"github.com/cairnbackup/cairn/sdk/plugin"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/storagetest"
)

var pluginBin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "storage-azure-test")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		pluginBin = filepath.Join(dir, "storage-azure")
		if out, err := exec.Command("go", "build", "-o", pluginBin, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building the plugin: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

func TestDescribe(t *testing.T) {
	client := goplugin.NewClient(plugin.ClientConfig(pluginBin, nil))
	defer client.Kill()
	info, err := plugin.Describe(context.Background(), client)
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if info.Name != "storage-azure" || fmt.Sprint(info.Schemes) != "[azure-blob azure]" {
		t.Errorf("Describe = %+v, want storage-azure serving azure-blob and azure", info)
	}
}

// TestConformanceOverPlugin runs the kit over go-plugin against Azurite,
// at the container's root and under a prefix. The 256 MiB case is run in
// process by azurestore's tests.
func TestConformanceOverPlugin(t *testing.T) {
	az := testservers.StartAzurite(t)
	t.Run("Root", func(t *testing.T) {
		storagetest.Run(t, storagetest.Config{
			NewStore: func(t *testing.T) storage.Store {
				return storagetest.OverPlugin(t, pluginBin, az.URI(az.NewContainer(t)))
			},
			SkipLarge:   true,
			ManyObjects: 1100, // more than the store's 1000-entry pages
		})
	})
	t.Run("Prefixed", func(t *testing.T) {
		storagetest.Run(t, storagetest.Config{
			NewStore: func(t *testing.T) storage.Store {
				return storagetest.OverPlugin(t, pluginBin, az.URI(az.NewContainer(t)+"/tenant/7"))
			},
			SkipLarge:   true,
			ManyObjects: 1100, // more than the store's 1000-entry pages
		})
	})
}
