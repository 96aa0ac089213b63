package s3store

import (
	"bytes"
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// writer buffers one part at a time. Until PartSize bytes have arrived it
// has sent nothing; then it starts a multipart upload and sends each full
// part synchronously, so at most one part is held. Not safe for concurrent
// use, as io.Writer implementations usually are not.
//
// The multipart upload asks for CRC32 checksums on every call (create,
// parts, complete): the SDK adds CRC32 request checksums by default, and
// strict servers refuse a completion whose parts' checksums were not
// announced when the upload was created.
type writer struct {
	s       *Store
	ctx     context.Context
	name    string
	cond    bool
	writeID string

	buf      []byte
	uploadID string
	parts    []types.CompletedPart
	err      error // sticky: the first failure
	done     bool  // committed, aborted or failed
}

func (w *writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done {
		return 0, fmt.Errorf("writing %s: writer already closed: %w", w.s.where(w.name), storage.ErrInvalidArgument)
	}
	if err := w.ctx.Err(); err != nil {
		return 0, w.fail(fmt.Errorf("writing %s: %w", w.s.where(w.name), err))
	}
	n := 0
	for len(p) > 0 {
		if w.buf == nil {
			// Small first writes get a small buffer; it grows up to
			// PartSize once and is then reused.
			w.buf = make([]byte, 0, min(max(len(p), 64<<10), PartSize))
		}
		k := min(len(p), PartSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(w.buf) == PartSize {
			if err := w.flushPart(); err != nil {
				return n, w.fail(err)
			}
		}
	}
	return n, nil
}

// flushPart sends the buffer as the next part, starting the upload first
// if needed, and empties the buffer.
func (w *writer) flushPart() error {
	if w.uploadID == "" {
		out, err := w.s.client.CreateMultipartUpload(w.ctx, &s3.CreateMultipartUploadInput{
			Bucket:               aws.String(w.s.cfg.Bucket),
			Key:                  aws.String(w.s.key(w.name)),
			ChecksumAlgorithm:    types.ChecksumAlgorithmCrc32,
			StorageClass:         w.s.cfg.StorageClass,
			ServerSideEncryption: w.s.cfg.SSEMode,
			SSEKMSKeyId:          optional(w.s.cfg.KMSKeyID),
			Metadata:             map[string]string{writeIDMeta: w.writeID},
		})
		if err != nil {
			return w.s.errorf("starting a multipart upload of", w.name, err)
		}
		w.uploadID = aws.ToString(out.UploadId)
	}
	num := int32(len(w.parts) + 1)
	out, err := w.s.client.UploadPart(w.ctx, &s3.UploadPartInput{
		Bucket:            aws.String(w.s.cfg.Bucket),
		Key:               aws.String(w.s.key(w.name)),
		UploadId:          aws.String(w.uploadID),
		PartNumber:        aws.Int32(num),
		Body:              bytes.NewReader(w.buf),
		ContentLength:     aws.Int64(int64(len(w.buf))),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return w.s.errorf(fmt.Sprintf("uploading part %d of", num), w.name, err)
	}
	w.parts = append(w.parts, types.CompletedPart{
		PartNumber:    aws.Int32(num),
		ETag:          out.ETag,
		ChecksumCRC32: out.ChecksumCRC32,
	})
	w.buf = w.buf[:0]
	return nil
}

// Close commits the object: one PutObject when it fits in a part,
// otherwise the last part and CompleteMultipartUpload.
func (w *writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return fmt.Errorf("closing %s: writer already closed: %w", w.s.where(w.name), storage.ErrInvalidArgument)
	}
	if err := w.ctx.Err(); err != nil {
		return w.fail(fmt.Errorf("committing %s: %w", w.s.where(w.name), err))
	}
	err := w.s.checkConflicts(w.ctx, w.name)
	if err != nil {
		return w.fail(err)
	}
	if w.uploadID == "" {
		err = w.putObject()
	} else {
		err = w.complete()
	}
	if err != nil {
		return w.fail(err)
	}
	w.done = true
	w.buf = nil
	return nil
}

func (w *writer) putObject() error {
	in := &s3.PutObjectInput{
		Bucket:               aws.String(w.s.cfg.Bucket),
		Key:                  aws.String(w.s.key(w.name)),
		Body:                 bytes.NewReader(w.buf),
		ContentLength:        aws.Int64(int64(len(w.buf))),
		StorageClass:         w.s.cfg.StorageClass,
		ServerSideEncryption: w.s.cfg.SSEMode,
		SSEKMSKeyId:          optional(w.s.cfg.KMSKeyID),
		Metadata:             map[string]string{writeIDMeta: w.writeID},
	}
	if w.cond {
		in.IfNoneMatch = aws.String("*")
	}
	_, err := w.s.client.PutObject(w.ctx, in)
	if err != nil {
		if w.cond && (errorCode(err) == "PreconditionFailed" || httpStatus(err) == 412) {
			if w.committedByUs() {
				return nil
			}
		}
		return w.s.errorf("writing", w.name, err)
	}
	return nil
}

func (w *writer) complete() error {
	if len(w.buf) > 0 {
		if err := w.flushPart(); err != nil {
			return err
		}
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(w.s.cfg.Bucket),
		Key:             aws.String(w.s.key(w.name)),
		UploadId:        aws.String(w.uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts},
	}
	if w.cond {
		in.IfNoneMatch = aws.String("*")
	}
	_, err := w.s.client.CompleteMultipartUpload(w.ctx, in)
	if err != nil {
		code := errorCode(err)
		if (code == "NoSuchUpload" || (w.cond && (code == "PreconditionFailed" || httpStatus(err) == 412))) && w.committedByUs() {
			w.uploadID = ""
			return nil
		}
		return w.s.errorf("completing the multipart upload of", w.name, err)
	}
	w.uploadID = ""
	return nil
}

// committedByUs reports whether the object now under the name is the one
// this writer wrote: a commit whose reply was lost, retried by the SDK,
// fails the retry (412, NoSuchUpload) although it went through.
func (w *writer) committedByUs() bool {
	out, err := w.s.client.HeadObject(w.ctx, &s3.HeadObjectInput{
		Bucket: aws.String(w.s.cfg.Bucket),
		Key:    aws.String(w.s.key(w.name)),
	})
	return err == nil && out.Metadata[writeIDMeta] == w.writeID
}

// Abort discards what was written: nothing was sent for a small object;
// a multipart upload is aborted, on a context that survives the write's
// cancellation.
func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.buf = nil
	if w.err == nil {
		w.err = fmt.Errorf("writing %s: aborted: %w", w.s.where(w.name), storage.ErrInvalidArgument)
	}
	return w.abortUpload()
}

// fail records err, aborts the upload, and returns err.
func (w *writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	w.done = true
	w.buf = nil
	if aerr := w.abortUpload(); aerr != nil {
		w.s.logger.Warn("aborting a failed multipart upload", "object", w.s.where(w.name), "error", aerr)
	}
	return w.err
}

func (w *writer) abortUpload() error {
	if w.uploadID == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), cleanupTimeout)
	defer cancel()
	_, err := w.s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket:   aws.String(w.s.cfg.Bucket),
		Key:      aws.String(w.s.key(w.name)),
		UploadId: aws.String(w.uploadID),
	})
	w.uploadID = ""
	if err != nil && errorCode(err) != "NoSuchUpload" {
		return w.s.errorf("aborting the multipart upload of", w.name, err)
	}
	return nil
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}
