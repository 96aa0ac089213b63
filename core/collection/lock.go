package collection

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/core/manifest"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// LockPrefix starts the name of a layer's lock file, which ends with the
// id of the job holding it.
const LockPrefix = "BACKUP-LOCK-"

// LockName is the name of jobID's lock file in dir.
func LockName(dir string, jobID int64) string {
	return path.Join(dir, LockPrefix+strconv.FormatInt(jobID, 10))
}

// cleanupTimeout bounds the removal of a lock after ctx was cancelled.
const cleanupTimeout = 10 * time.Second

// AcquireLock makes jobID the only writer of the layer in dir.
//
// It refuses a dir that already holds a BACKUP_MANIFEST (an error wrapping
// storage.ErrAlreadyExists: "a backup already exists in <dir>"). Otherwise
// it writes dir/BACKUP-LOCK-<jobID> and then lists dir/BACKUP-LOCK-*: if
// a lock of another job (or one whose name does not parse) is there, it
// removes its own and returns an error wrapping ErrLocked naming that
// job. Finally it checks for a manifest again, in case a job that held the
// lock completed and released it in between.
//
// Acquiring is idempotent for one job: a resumed job calls it again and
// succeeds while it holds the lock.
//
// Two jobs racing for one dir never both succeed, given a store whose
// listings show every write that completed before the listing began (the
// read-after-write consistency of S3, GCS, Azure and local files): if both
// succeeded, each listed before the other's lock was written, yet each
// wrote before it listed — a cycle in time. Both may be refused; the
// caller retries or fails the job.
//
// A lock left by a job that died for good stays until ReleaseLock or an
// operator removes it; the error names the job so that its state can be
// checked.
func AcquireLock(ctx context.Context, s storage.Store, dir string, jobID int64) error {
	if !manifest.CleanRelative(dir) {
		return fmt.Errorf("acquiring lock on %q: %w: not a clean relative directory", dir, storage.ErrInvalidArgument)
	}
	if jobID <= 0 {
		return fmt.Errorf("acquiring lock on %s: %w: job id %d is not positive", dir, storage.ErrInvalidArgument, jobID)
	}
	if err := refuseCompleted(ctx, s, dir); err != nil {
		return err
	}
	own := LockName(dir, jobID)
	if err := storage.WriteAll(ctx, s, own, []byte(strconv.FormatInt(jobID, 10)), storage.WriteOptions{}); err != nil {
		return fmt.Errorf("acquiring lock on %s: writing %s: %w", dir, own, err)
	}
	holder, err := otherHolder(ctx, s, dir, jobID)
	if err == nil && holder != "" {
		err = fmt.Errorf("acquiring lock on %s: %w: %s", dir, ErrLocked, holder)
	}
	if err == nil {
		err = refuseCompleted(ctx, s, dir)
	}
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if derr := s.Delete(cctx, own); derr != nil {
			return fmt.Errorf("%w (and removing %s: %w)", err, own, derr)
		}
		return err
	}
	return nil
}

// ReleaseLock removes jobID's lock from dir. Releasing a lock that is not
// held is not an error. A job releases its lock after writing its
// manifest (the manifest then keeps others out) or when it gives up.
func ReleaseLock(ctx context.Context, s storage.Store, dir string, jobID int64) error {
	name := LockName(dir, jobID)
	if err := s.Delete(ctx, name); err != nil {
		return fmt.Errorf("releasing lock %s: %w", name, err)
	}
	return nil
}

func refuseCompleted(ctx context.Context, s storage.Store, dir string) error {
	name := path.Join(dir, manifest.ManifestName)
	_, err := s.Stat(ctx, name)
	switch {
	case err == nil:
		return fmt.Errorf("acquiring lock on %s: %w: a backup already exists in %s", dir, storage.ErrAlreadyExists, dir)
	case errors.Is(err, storage.ErrNotFound):
		return nil
	default:
		return fmt.Errorf("acquiring lock on %s: checking %s: %w", dir, name, err)
	}
}

// otherHolder describes the first lock in dir not held by jobID, or
// returns "" when there is none.
func otherHolder(ctx context.Context, s storage.Store, dir string, jobID int64) (string, error) {
	prefix := path.Join(dir, LockPrefix)
	var holder string
	err := s.List(ctx, storage.ListOptions{Prefix: prefix}, func(o storage.ObjectInfo) error {
		if o.IsPrefix {
			return nil
		}
		suffix := strings.TrimPrefix(o.Name, prefix)
		id, err := strconv.ParseInt(suffix, 10, 64)
		switch {
		case err != nil:
			holder = fmt.Sprintf("unrecognized lock file %s is present", o.Name)
		case id != jobID:
			holder = fmt.Sprintf("job %d holds %s", id, o.Name)
		default:
			return nil
		}
		return errStopListing
	})
	if err != nil && !errors.Is(err, errStopListing) {
		return "", fmt.Errorf("acquiring lock on %s: listing %s*: %w", dir, prefix, err)
	}
	return holder, nil
}
