package manifest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cairnbackup/cairn/core/manifest/manifestpb"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// Checkpoint files live in <dir>/CheckpointDir and are named
// CheckpointPrefix + DescTS(written at).
const (
	CheckpointDir    = "progress"
	CheckpointPrefix = "BACKUP-CHECKPOINT-"
)

// keepCheckpoints is how many checkpoints WriteCheckpoint leaves behind:
// the newest, and one more in case the newest turns out torn.
const keepCheckpoints = 2

// descTSLen is the number of digits of DescTS: math.MaxInt64 has 19.
const descTSLen = 19

// DescTS encodes t so that the lexical order of the encodings is the
// reverse chronological order of the times: newest first. It is the
// zero-padded decimal of math.MaxInt64 - t.UnixNano(), always 19 digits.
// Times before the Unix epoch are encoded as the epoch; times after 2262
// (beyond UnixNano's range) are not supported.
func DescTS(t time.Time) string {
	ns := t.UnixNano()
	if t.Before(time.Unix(0, 0)) {
		ns = 0
	}
	return fmt.Sprintf("%0*d", descTSLen, math.MaxInt64-ns)
}

// ParseDescTS decodes what DescTS encoded, as a UTC time.
func ParseDescTS(s string) (time.Time, error) {
	if len(s) != descTSLen || strings.Trim(s, "0123456789") != "" {
		return time.Time{}, fmt.Errorf("parsing descending timestamp %q: %w: want %d digits", s, storage.ErrInvalidArgument, descTSLen)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("parsing descending timestamp %q: %w: %w", s, storage.ErrInvalidArgument, err)
	}
	return time.Unix(0, math.MaxInt64-v).UTC(), nil
}

// CheckpointName is the name, relative to a layer's directory, of the
// checkpoint written at t.
func CheckpointName(t time.Time) string {
	return path.Join(CheckpointDir, CheckpointPrefix+DescTS(t))
}

// WriteCheckpoint writes m, marked as a checkpoint (m itself is not
// modified), to dir/progress/BACKUP-CHECKPOINT-<DescTS(now)> with its
// checksum file, checksum first. It then deletes older checkpoints so that
// only the newest two remain; the one just written is always kept, even
// when a skewed clock made its name sort after an existing one. Pruning is
// best effort: an error deleting is returned, but the new checkpoint is
// already durable by then.
//
// Names order checkpoints, so now must not go backwards across one job's
// checkpoints (a coordinator that adopts a job passes a time after the
// newest existing checkpoint); ReadLatestCheckpoint trusts the names.
func WriteCheckpoint(ctx context.Context, s storage.Store, dir string, m *manifestpb.BackupManifest, now time.Time) error {
	name := path.Join(dir, CheckpointName(now))
	if !m.GetIsCheckpoint() {
		m = proto.CloneOf(m)
		m.IsCheckpoint = true
	}
	if err := Validate(m); err != nil {
		return fmt.Errorf("writing %s: %w: %w", name, storage.ErrInvalidArgument, err)
	}
	data, err := Encode(m)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := writeWithChecksum(ctx, s, name, data, storage.WriteOptions{}); err != nil {
		return err
	}
	return pruneCheckpoints(ctx, s, dir, path.Base(name))
}

// pruneCheckpoints deletes every checkpoint of dir but keep and the newest
// others, up to keepCheckpoints in all, along with their checksum files
// and any checksum file whose checkpoint is gone.
func pruneCheckpoints(ctx context.Context, s storage.Store, dir, keep string) error {
	prefix := path.Join(dir, CheckpointDir) + "/"
	var names []string
	err := s.List(ctx, storage.ListOptions{Prefix: prefix + CheckpointPrefix}, func(o storage.ObjectInfo) error {
		if !o.IsPrefix {
			names = append(names, strings.TrimPrefix(o.Name, prefix))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pruning checkpoints in %s: %w", prefix, err)
	}
	present := make(map[string]bool, len(names))
	for _, n := range names {
		present[n] = true
	}
	kept := 1 // keep itself
	var doomed []string
	for _, n := range names { // newest first
		base, isSum := strings.CutSuffix(n, ChecksumSuffix)
		switch {
		case base == keep:
		case isSum:
			if !present[base] {
				doomed = append(doomed, n)
			}
		case kept < keepCheckpoints:
			kept++
		default:
			doomed = append(doomed, n, n+ChecksumSuffix)
		}
	}
	for _, n := range doomed {
		if err := s.Delete(ctx, prefix+n); err != nil {
			return fmt.Errorf("pruning checkpoint %s%s: %w", prefix, n, err)
		}
	}
	return nil
}

// ReadLatestCheckpoint returns the newest checkpoint in dir whose checksum
// verifies and whose contents decode; torn or corrupt newer ones are
// skipped silently. It returns false when there is none. Errors other
// than corruption (an unavailable store, a cancelled ctx) are returned.
func ReadLatestCheckpoint(ctx context.Context, s storage.Store, dir string) (*manifestpb.BackupManifest, bool, error) {
	prefix := path.Join(dir, CheckpointDir) + "/"
	var names []string
	err := s.List(ctx, storage.ListOptions{Prefix: prefix + CheckpointPrefix}, func(o storage.ObjectInfo) error {
		if !o.IsPrefix && !strings.HasSuffix(o.Name, ChecksumSuffix) {
			names = append(names, o.Name)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("listing checkpoints in %s: %w", prefix, err)
	}
	for _, name := range names { // newest first
		if _, err := ParseDescTS(strings.TrimPrefix(name, prefix+CheckpointPrefix)); err != nil {
			continue // not a name WriteCheckpoint makes
		}
		data, err := readVerified(ctx, s, name)
		if errors.Is(err, ErrCorrupt) || errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, false, prefixErr(name, err)
		}
		m, err := DecodeManifest(data)
		if err != nil {
			continue
		}
		return m, true, nil
	}
	return nil, false, nil
}
