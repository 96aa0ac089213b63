package manifest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/cairnbackup/cairn/core/manifest/manifestpb"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// Names of metadata files inside a layer's directory.
const (
	ManifestName   = "BACKUP_MANIFEST"
	ChecksumSuffix = "-CHECKSUM"
	PartialPrefix  = "BACKUP_PART_"
)

// ErrNoManifest means a layer's directory holds no BACKUP_MANIFEST: the
// backup is incomplete or was never there.
var ErrNoManifest = errors.New("no backup manifest")

// MaxEncodedSize bounds how many bytes a metadata file may have on storage;
// a larger one is reported as corrupt instead of being read into memory.
const MaxEncodedSize = 256 << 20

// maxChecksumFileSize bounds a checksum file: 64 hex digits and perhaps a
// newline.
const maxChecksumFileSize = 128

// WriteManifest writes dir/BACKUP_MANIFEST-CHECKSUM and then
// dir/BACKUP_MANIFEST, so that the manifest's presence marks a complete,
// verifiable backup. m is validated first (an invalid one is refused with
// an error wrapping storage.ErrInvalidArgument and nothing is written).
//
// An existing BACKUP_MANIFEST is never replaced: the call fails with an
// error wrapping storage.ErrAlreadyExists before anything is written. The
// caller holds the layer's lock, so there is no second writer; a job that
// resumes after writing its manifest reads it back instead.
func WriteManifest(ctx context.Context, s storage.Store, dir string, m *manifestpb.BackupManifest) error {
	name := path.Join(dir, ManifestName)
	if err := Validate(m); err != nil {
		return fmt.Errorf("writing %s: %w: %w", name, storage.ErrInvalidArgument, err)
	}
	if _, err := s.Stat(ctx, name); err == nil {
		return fmt.Errorf("writing %s: %w", name, storage.ErrAlreadyExists)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	data, err := Encode(m)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return writeWithChecksum(ctx, s, name, data, storage.WriteOptions{IfNotExists: true})
}

// ReadManifest reads, verifies and decodes dir/BACKUP_MANIFEST. It returns
// an error wrapping ErrNoManifest (and storage.ErrNotFound) when the file
// is missing, and one wrapping ErrCorrupt, naming the file, when the
// checksum file is missing or does not match, or the contents do not
// decode or validate.
func ReadManifest(ctx context.Context, s storage.Store, dir string) (*manifestpb.BackupManifest, error) {
	name := path.Join(dir, ManifestName)
	data, err := readVerified(ctx, s, name)
	if errors.Is(err, storage.ErrNotFound) && !errors.Is(err, ErrCorrupt) {
		return nil, fmt.Errorf("reading %s: %w: %w", name, ErrNoManifest, err)
	}
	if err != nil {
		return nil, prefixErr(name, err)
	}
	m, err := DecodeManifest(data)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return m, nil
}

// PartialName is the name of the n-th locality bucket's partial manifest,
// BACKUP_PART_<n>_<kv>, with every byte of locality outside [A-Za-z0-9-]
// replaced by "_" (and cut to 96 bytes) so that it is safe on every store.
// n keeps names unique when two localities sanitize alike.
func PartialName(n int, locality string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s%d_", PartialPrefix, n)
	if locality == "" {
		locality = "default"
	}
	for i := 0; i < len(locality) && i < 96; i++ {
		c := locality[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// WritePartial writes the n-th locality bucket's partial manifest,
// dir/PartialName(n, p.Locality), and its checksum file, checksum first.
// The name is deterministic, so a retry replaces the previous attempt.
func WritePartial(ctx context.Context, s storage.Store, dir string, n int, p *manifestpb.BackupPartialManifest) error {
	name := path.Join(dir, PartialName(n, p.GetLocality()))
	if err := ValidatePartial(p); err != nil {
		return fmt.Errorf("writing %s: %w: %w", name, storage.ErrInvalidArgument, err)
	}
	data, err := Encode(p)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return writeWithChecksum(ctx, s, name, data, storage.WriteOptions{})
}

// ReadPartial reads, verifies and decodes dir/PartialName(n, locality). A
// partial whose locality is not locality, or, when backupID is not empty,
// whose backup_id is not backupID (a leftover of another backup), is
// reported as corrupt. A missing file gives an error wrapping
// storage.ErrNotFound.
func ReadPartial(ctx context.Context, s storage.Store, dir string, n int, locality, backupID string) (*manifestpb.BackupPartialManifest, error) {
	name := path.Join(dir, PartialName(n, locality))
	data, err := readVerified(ctx, s, name)
	if err != nil {
		return nil, prefixErr(name, err)
	}
	p, err := DecodePartial(data)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if p.Locality != locality {
		return nil, fmt.Errorf("reading %s: %w: locality is %q, want %q", name, ErrCorrupt, p.Locality, locality)
	}
	if backupID != "" && p.BackupId != backupID {
		return nil, fmt.Errorf("reading %s: %w: belongs to backup %q, want %q", name, ErrCorrupt, p.BackupId, backupID)
	}
	return p, nil
}

// writeWithChecksum writes name+ChecksumSuffix (always replacing) and then
// name with opts.
func writeWithChecksum(ctx context.Context, s storage.Store, name string, data []byte, opts storage.WriteOptions) error {
	sum := sha256.Sum256(data)
	if err := storage.WriteAll(ctx, s, name+ChecksumSuffix, []byte(hex.EncodeToString(sum[:])), storage.WriteOptions{}); err != nil {
		return fmt.Errorf("writing %s%s: %w", name, ChecksumSuffix, err)
	}
	if err := storage.WriteAll(ctx, s, name, data, opts); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// readVerified reads name and checks it against name+ChecksumSuffix.
// Errors reading name itself are returned as they are, for the caller to
// prefix; every other error names its file, and every integrity failure
// wraps ErrCorrupt.
func readVerified(ctx context.Context, s storage.Store, name string) ([]byte, error) {
	data, err := readLimited(ctx, s, name, MaxEncodedSize)
	if err != nil {
		return nil, err
	}
	sumName := name + ChecksumSuffix
	sumText, err := readLimited(ctx, s, sumName, maxChecksumFileSize)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("reading %s: %w: checksum file %s is missing", name, ErrCorrupt, sumName)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", sumName, err)
	}
	want, err := hex.DecodeString(strings.TrimSpace(string(sumText)))
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("reading %s: %w: checksum file does not hold a hex SHA-256", sumName, ErrCorrupt)
	}
	got := sha256.Sum256(data)
	if string(got[:]) != string(want) {
		return nil, fmt.Errorf("reading %s: %w: checksum mismatch (stored %x, computed %x)", name, ErrCorrupt, want, got)
	}
	return data, nil
}

// errTooLarge is wrapped with ErrCorrupt: a metadata file over its bound is
// not one cairn wrote.
var errTooLarge = fmt.Errorf("%w: file too large", ErrCorrupt)

func readLimited(ctx context.Context, s storage.Store, name string, limit int64) ([]byte, error) {
	r, err := s.Read(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w (more than %d bytes)", errTooLarge, limit)
	}
	return data, nil
}

// prefixErr adds "reading name: " unless err already starts with it.
func prefixErr(name string, err error) error {
	if strings.HasPrefix(err.Error(), "reading "+name) {
		return err
	}
	return fmt.Errorf("reading %s: %w", name, err)
}
