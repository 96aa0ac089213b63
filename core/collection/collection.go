// Package collection knows the layout of a backup collection: the
// subdirectory a full backup lives in (named by its end time), the LATEST
// pointers, the lock that keeps a second job out of a layer, and how to
// list the backups a collection holds without reading their data files.
//
//	<collection>/
//	  2026/11/24-004726.00/            a full backup (SubdirFor its end time)
//	    BACKUP_MANIFEST ...            see package manifest
//	    BACKUP-LOCK-<jobID>
//	    data/<node>-<unique>.sst       DataPath
//	  incrementals/2026/11/24-004726.00/...   IncrementalsDir (layers to come)
//	  metadata/latest/LATEST-<desc-ts> LATEST pointers, newest first
//
// Every function takes names relative to the collection's root; the store
// is opened on the collection URI.
package collection

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/manifest"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrNoBackups means the collection has no LATEST pointer: no full
	// backup ever completed in it.
	ErrNoBackups = errors.New("no backups in collection")
	// ErrLocked means another job holds a layer's lock.
	ErrLocked = errors.New("locked by another job")
)

// subdirLayout formats a full backup's subdirectory. Go's ".00" keeps
// exactly two fractional digits (hundredths), truncating.
const subdirLayout = "2006/01/02-150405.00"

var subdirRE = regexp.MustCompile(`^[0-9]{4}/[0-9]{2}/[0-9]{2}-[0-9]{6}\.[0-9]{2}$`)

// SubdirFor is the subdirectory of a full backup that ends at end:
// "2006/01/02-150405.00" in UTC, to the hundredth of a second (truncated).
// Lexical order of subdirectories is chronological order.
func SubdirFor(end time.Time) string { return end.UTC().Format(subdirLayout) }

// ValidateSubdir checks that s names a full backup's subdirectory exactly
// as SubdirFor makes them, optionally with a leading "/" (as users type
// it), and that the date and time exist. Anything else — "..", extra or
// missing elements, other separators — is refused with an error wrapping
// storage.ErrInvalidArgument.
func ValidateSubdir(s string) error {
	_, err := normalizeSubdir(s)
	return err
}

func normalizeSubdir(s string) (string, error) {
	t := strings.TrimPrefix(s, "/")
	if !subdirRE.MatchString(t) {
		return "", fmt.Errorf("validating subdirectory %q: %w: want the form YYYY/MM/DD-HHMMSS.ss", s, storage.ErrInvalidArgument)
	}
	if _, err := time.Parse(subdirLayout, t); err != nil {
		return "", fmt.Errorf("validating subdirectory %q: %w: not a valid date and time", s, storage.ErrInvalidArgument)
	}
	return t, nil
}

// ResolveSubdir returns the subdirectory a statement names: the newest
// full backup's when latest is set (ErrNoBackups when there is none), else
// subdir, validated and without a leading "/".
func ResolveSubdir(ctx context.Context, s storage.Store, subdir string, latest bool) (string, error) {
	if latest {
		return ReadLatest(ctx, s)
	}
	return normalizeSubdir(subdir)
}

// DataPath is the name, relative to a layer's directory, of a data file
// written by node: "data/<node>-<unique>.sst". unique must be non-empty
// and hold no "/"; callers make it unique per node (e.g. a counter or a
// random id), which makes a retried export's name deterministic or fresh
// as they choose.
func DataPath(nodeID int32, unique string) string {
	return fmt.Sprintf("data/%d-%s.sst", nodeID, unique)
}

// IncrementalsDir is the directory under which the incremental layers on
// top of the full backup in subdir live: "incrementals/<subdir>". It is
// the seam for incremental chains, which are not implemented yet.
func IncrementalsDir(subdir string) string {
	return path.Join(incrementalsPrefix, strings.TrimPrefix(subdir, "/"))
}

const incrementalsPrefix = "incrementals"

// Layer describes one backup layer of a collection.
type Layer struct {
	// Subdir is the layer's directory relative to the collection root.
	Subdir string
	// Complete is set when the layer has a BACKUP_MANIFEST; the fields
	// below are only set then.
	Complete  bool
	BackupID  string
	StartTime hlc.Timestamp // zero for a full backup
	EndTime   hlc.Timestamp
}

// ReadLayer reads the manifest of the layer in subdir. A layer without a
// manifest is returned with Complete unset and no error; a corrupt one is
// an error (wrapping manifest.ErrCorrupt).
func ReadLayer(ctx context.Context, s storage.Store, subdir string) (Layer, error) {
	l := Layer{Subdir: subdir}
	m, err := manifest.ReadManifest(ctx, s, subdir)
	if errors.Is(err, manifest.ErrNoManifest) {
		return l, nil
	}
	if err != nil {
		return Layer{}, err
	}
	l.Complete = true
	l.BackupID = m.BackupId
	l.StartTime = hlc.Timestamp{WallTime: m.GetStartTime().GetWallTime(), Logical: m.GetStartTime().GetLogical()}
	l.EndTime = hlc.Timestamp{WallTime: m.GetEndTime().GetWallTime(), Logical: m.GetEndTime().GetLogical()}
	return l, nil
}
