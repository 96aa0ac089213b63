package azurestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// Write implements storage.Store. See the package comment for how the
// object is uploaded.
func (s *Store) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	if err := s.checkName("writing", name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, s.classify("writing", name, err)
	}
	var nonce [12]byte
	_, _ = rand.Read(nonce[:])
	return &writer{
		s:     s,
		ctx:   ctx,
		name:  name,
		opts:  opts,
		bb:    s.cc.NewBlockBlobClient(s.key(name)),
		nonce: hex.EncodeToString(nonce[:]),
	}, nil
}

// writer stages full blocks as they fill and commits them on Close.
type writer struct {
	s    *Store
	ctx  context.Context
	name string
	opts storage.WriteOptions
	bb   *blockblob.Client
	// nonce makes this writer's block IDs differ from those of any other
	// writer of the same blob, whose uncommitted blocks share one list.
	nonce  string
	buf    []byte
	blocks []string
	err    error // sticky: the first failure
	done   bool
}

var _ storage.Writer = (*writer)(nil)

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("writing %s in azure container %s: writer already closed: %w", w.name, w.s.cfg.Container, storage.ErrInvalidArgument)
	}
	if w.err != nil {
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		w.err = w.s.classify("writing", w.name, err)
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = make([]byte, 0, min(max(len(p), 64<<10), w.s.blockSize))
		}
		k := min(len(p), w.s.blockSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		n += k
		if len(w.buf) == w.s.blockSize {
			if err := w.stage(); err != nil {
				w.err = err
				return n, err
			}
		}
	}
	return n, nil
}

// stage uploads the buffer as the next block and empties it. The SDK is
// done with the buffer when StageBlock returns, so it is reused.
func (w *writer) stage() error {
	id := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "%s-%09d", w.nonce, len(w.blocks)))
	body := streaming.NopCloser(bytes.NewReader(w.buf))
	if _, err := w.bb.StageBlock(w.ctx, id, body, nil); err != nil {
		return w.s.classify("writing", w.name, err)
	}
	w.blocks = append(w.blocks, id)
	w.buf = w.buf[:0]
	return nil
}

// Close commits the object: one Put Blob when nothing was staged yet,
// otherwise the last block and Put Block List.
func (w *writer) Close() error {
	if w.done {
		return fmt.Errorf("closing %s in azure container %s: writer already closed: %w", w.name, w.s.cfg.Container, storage.ErrInvalidArgument)
	}
	w.done = true
	defer func() { w.buf = nil }()
	if w.err != nil {
		return w.err
	}
	if err := w.ctx.Err(); err != nil {
		return w.s.classify("writing", w.name, err)
	}
	var cond *blob.AccessConditions
	if w.opts.IfNotExists {
		cond = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to.Ptr(azcore.ETagAny)}}
	}
	var err error
	if len(w.blocks) == 0 {
		_, err = w.bb.Upload(w.ctx, streaming.NopCloser(bytes.NewReader(w.buf)), &blockblob.UploadOptions{AccessConditions: cond})
	} else {
		if len(w.buf) > 0 {
			if err := w.stage(); err != nil {
				return err
			}
		}
		_, err = w.bb.CommitBlockList(w.ctx, w.blocks, &blockblob.CommitBlockListOptions{AccessConditions: cond})
	}
	if err != nil {
		if w.opts.IfNotExists && bloberror.HasCode(err, bloberror.InvalidBlockList) {
			// Another writer's commit of this blob discarded our staged
			// blocks: if that writer created the blob, we lost the race
			// for it.
			if _, serr := w.bb.GetProperties(w.ctx, nil); serr == nil {
				return fmt.Errorf("committing %s in azure container %s: created by a concurrent writer: %w", w.name, w.s.cfg.Container, storage.ErrAlreadyExists)
			}
		}
		err = w.s.classify("committing", w.name, err)
		if !errors.Is(err, storage.ErrAlreadyExists) && !errors.Is(err, context.Canceled) {
			w.s.logger.Warn("committing a blob", "name", w.s.key(w.name), "blocks", len(w.blocks), "err", err)
		}
		return err
	}
	return nil
}

// Abort discards the buffer. Staged blocks are never committed, and the
// service drops them (see the package comment).
func (w *writer) Abort() error {
	w.done = true
	w.buf = nil
	return nil
}
