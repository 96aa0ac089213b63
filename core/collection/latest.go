package collection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/core/manifest"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// LatestPrefix starts the names of LATEST pointers; each is followed by
// manifest.DescTS of when it was written, so a listing returns the newest
// first.
const LatestPrefix = "metadata/latest/LATEST-"

// latestBatch is how many pointer names ReadLatest takes from one listing
// before reading them, so that memory does not grow with the number of
// backups.
const latestBatch = 16

// maxLatestSize bounds what ReadLatest reads of one pointer.
const maxLatestSize = 256

var errStopListing = errors.New("stop listing")

// WriteLatest records subdir as the newest full backup by writing
// metadata/latest/LATEST-<DescTS(now)> containing it. Pointers are never
// replaced: writing the same pointer again is a no-op, and a different
// subdir under an existing name is refused with an error wrapping
// storage.ErrAlreadyExists. Older pointers are kept as history.
func WriteLatest(ctx context.Context, s storage.Store, subdir string, now time.Time) error {
	sub, err := normalizeSubdir(subdir)
	if err != nil {
		return fmt.Errorf("writing LATEST: %w", err)
	}
	name := LatestPrefix + manifest.DescTS(now)
	err = storage.WriteAll(ctx, s, name, []byte(sub), storage.WriteOptions{IfNotExists: true})
	if errors.Is(err, storage.ErrAlreadyExists) {
		old, rerr := storage.ReadAll(ctx, s, name)
		if rerr != nil {
			return fmt.Errorf("writing %s: %w", name, rerr)
		}
		if bytes.Equal(bytes.TrimSpace(old), []byte(sub)) {
			return nil
		}
		return fmt.Errorf("writing %s: %w: it names %q, not %q", name, storage.ErrAlreadyExists, old, sub)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// ReadLatest returns the subdirectory the newest LATEST pointer names.
// Pointers whose name or contents are not well formed are skipped. It
// returns an error wrapping ErrNoBackups when there is no pointer.
func ReadLatest(ctx context.Context, s storage.Store) (string, error) {
	after := ""
	for {
		var names []string
		err := s.List(ctx, storage.ListOptions{Prefix: LatestPrefix, StartAfter: after}, func(o storage.ObjectInfo) error {
			if o.IsPrefix {
				return nil
			}
			names = append(names, o.Name)
			if len(names) == latestBatch {
				return errStopListing
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopListing) {
			return "", fmt.Errorf("reading LATEST: listing %s: %w", LatestPrefix, err)
		}
		for _, name := range names {
			if _, err := manifest.ParseDescTS(strings.TrimPrefix(name, LatestPrefix)); err != nil {
				continue
			}
			sub, err := readPointer(ctx, s, name)
			if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrInvalidArgument) {
				continue
			}
			if err != nil {
				return "", err
			}
			return sub, nil
		}
		if len(names) < latestBatch {
			return "", fmt.Errorf("reading LATEST: %w", ErrNoBackups)
		}
		after = names[len(names)-1]
	}
}

func readPointer(ctx context.Context, s storage.Store, name string) (string, error) {
	r, err := s.Read(ctx, name, 0, maxLatestSize)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	defer r.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	sub, err := normalizeSubdir(strings.TrimSpace(buf.String()))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	return sub, nil
}
