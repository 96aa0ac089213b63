package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cairnbackup/cairn/core/cloud/local"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/storagetest"
)

var pluginBin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "storage-local-test")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		pluginBin = filepath.Join(dir, "storage-local")
		if out, err := exec.Command("go", "build", "-o", pluginBin, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building the plugin: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

func config(newStore func(t *testing.T) storage.Store) storagetest.Config {
	return storagetest.Config{NewStore: newStore, SkipLarge: testing.Short(), FileDirConflicts: true}
}

// TestConformance runs the kit on the local store three ways: in process,
// over go-plugin, and under a key prefix over go-plugin.
func TestConformance(t *testing.T) {
	t.Run("Direct", func(t *testing.T) {
		storagetest.Run(t, config(func(t *testing.T) storage.Store {
			s, err := local.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		}))
	})
	t.Run("OverPlugin", func(t *testing.T) {
		storagetest.Run(t, config(func(t *testing.T) storage.Store {
			return storagetest.OverPlugin(t, pluginBin, "file://"+t.TempDir())
		}))
	})
	t.Run("PrefixedOverPlugin", func(t *testing.T) {
		storagetest.Run(t, config(func(t *testing.T) storage.Store {
			return storagetest.PrefixedStore(storagetest.OverPlugin(t, pluginBin, "file://"+t.TempDir()), "tenant/7")
		}))
	})
}
