// Package manifest reads and writes the metadata files of a backup layer:
// BACKUP_MANIFEST, the partial manifests of locality buckets
// (BACKUP_PART_<n>_<kv>) and the progress checkpoints of a running backup
// (progress/BACKUP-CHECKPOINT-<desc-ts>), each with a "-CHECKSUM" companion.
//
// The encoding half of the package (Encode, DecodeManifest, DecodePartial,
// Validate, DescTS) is pure. The Read/Write helpers add the checksum scheme
// on top of a storage.Store.
//
// An encoded file is the 8-byte magic "CAIRNMF1" followed by one zstd
// stream of the protobuf bytes (cairn.manifest.v1, see manifestpb). The
// checksum file holds the lowercase hex SHA-256 of the whole encoded file.
package manifest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/cairnbackup/cairn/core/manifest/manifestpb"
)

// FormatVersion is the newest manifest format this build writes and reads.
const FormatVersion = 1

// Magic starts every encoded manifest, partial manifest and checkpoint.
const Magic = "CAIRNMF1"

// MaxDecodedSize bounds the decompressed size of one manifest; decoding a
// larger one fails instead of exhausting memory.
const MaxDecodedSize = 1 << 30

// maxWindow bounds the zstd window a decoder accepts, so that a forged
// frame header cannot make it allocate a huge history buffer. Encode uses
// a much smaller window.
const maxWindow = 32 << 20

// ErrCorrupt marks a metadata file that cannot be trusted: a checksum that
// does not match or is missing, bad magic, bytes that do not decode, or
// fields that fail validation.
var ErrCorrupt = errors.New("corrupt")

var encoder = func() *zstd.Encoder {
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20),
		zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		panic(err) // only on invalid options
	}
	return e
}()

// FileChecksum returns the hash used for every checksum cairn stores, of
// data files and metadata files alike: SHA-256.
func FileChecksum() hash.Hash { return sha256.New() }

// Encode serializes m (a BackupManifest or BackupPartialManifest) as
// Magic + zstd(protobuf). It does not validate m; WriteManifest and friends
// do. Encoding is deterministic for a given build.
func Encode(m proto.Message) ([]byte, error) {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	out := make([]byte, 0, len(Magic)+len(raw)/2+64)
	out = append(out, Magic...)
	return encoder.EncodeAll(raw, out), nil
}

// DecodeManifest parses and validates an encoded BackupManifest. Every
// error wraps ErrCorrupt and says what is wrong.
func DecodeManifest(data []byte) (*manifestpb.BackupManifest, error) {
	m := &manifestpb.BackupManifest{}
	if err := decode(data, m, MaxDecodedSize); err != nil {
		return nil, err
	}
	if err := Validate(m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return m, nil
}

// DecodePartial parses and validates an encoded BackupPartialManifest.
// Every error wraps ErrCorrupt and says what is wrong.
func DecodePartial(data []byte) (*manifestpb.BackupPartialManifest, error) {
	p := &manifestpb.BackupPartialManifest{}
	if err := decode(data, p, MaxDecodedSize); err != nil {
		return nil, err
	}
	if err := ValidatePartial(p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return p, nil
}

func decode(data []byte, m proto.Message, limit int64) error {
	if len(data) < len(Magic) || string(data[:len(Magic)]) != Magic {
		n := min(len(data), len(Magic))
		return fmt.Errorf("%w: bad magic %q, want %q", ErrCorrupt, data[:n], Magic)
	}
	raw, err := decompress(data[len(Magic):], limit)
	if err != nil {
		return fmt.Errorf("%w: decompressing: %w", ErrCorrupt, err)
	}
	if err := proto.Unmarshal(raw, m); err != nil {
		return fmt.Errorf("%w: unmarshaling %s: %w", ErrCorrupt, m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

// decompress streams rather than using DecodeAll: DecodeAll preallocates
// the size a frame header claims, so a few forged bytes could allocate up
// to the limit. Streaming grows the output with the bytes actually decoded.
func decompress(src []byte, limit int64) ([]byte, error) {
	d, err := zstd.NewReader(bytes.NewReader(src),
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxWindow))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(d, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("decompressed size exceeds %d bytes", limit)
	}
	return buf.Bytes(), nil
}
