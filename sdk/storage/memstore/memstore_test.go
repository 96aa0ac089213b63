package memstore_test

import (
	"testing"

	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/memstore"
	"github.com/cairnbackup/cairn/sdk/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store { return memstore.New() },
		// Objects live in memory, so the bounded-memory case cannot pass.
		SkipLarge: true,
	})
}
