package webdavstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// cleanupTimeout bounds the removal of a temporary resource after a
// failed or aborted write, which runs even when the write's ctx is done.
const cleanupTimeout = 30 * time.Second

var errAborted = errors.New("write aborted")

// Write implements storage.Store. The bytes stream into a PUT of a
// temporary resource as they are written, through an io.Pipe: memory does
// not grow with the object. Close MOVEs the resource to name; see the
// package comment.
func (s *Store) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	const op = "writing"
	if err := check(ctx, op, name); err != nil {
		return nil, err
	}
	if err := s.ensureCollection(ctx, op, name, s.abs(TempDir)); err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	putCtx, cancel := context.WithCancel(ctx)
	w := &writer{
		s: s, ctx: ctx, cancel: cancel, name: name, opts: opts,
		tmp: s.tempName(), pw: pw, putDone: make(chan error, 1),
	}
	go w.put(putCtx, pr)
	return w, nil
}

// writer is one object being written. Like any io.Writer it is for one
// goroutine at a time.
type writer struct {
	s      *Store
	ctx    context.Context
	cancel context.CancelFunc
	name   string
	opts   storage.WriteOptions
	tmp    string // absolute path of the temporary resource

	pw      *io.PipeWriter
	n       int64 // bytes accepted by the pipe
	putDone chan error
	putErr  error
	waited  bool
	state   int // open, closed or aborted
}

const (
	open = iota
	closed
	aborted
)

// put sends the PUT; its body is whatever Write puts into the pipe, until
// Close closes it.
func (w *writer) put(ctx context.Context, pr *io.PipeReader) {
	const op = "writing"
	target := w.s.url(w.tmp, false)
	resp, err := w.s.send(ctx, once, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, target, pr)
		if err != nil {
			return nil, err
		}
		req.ContentLength = -1 // chunked: the size is not known yet
		req.Header.Set("Content-Type", "application/octet-stream")
		return req, nil
	})
	switch {
	case err != nil:
		err = fmt.Errorf("%s %s: sending the data: %w", op, w.name, err)
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusNoContent:
		drain(resp)
	case resp.StatusCode == http.StatusConflict:
		// TempDir vanished; the next write makes it again.
		drain(resp)
		w.s.dirs.Delete(w.s.abs(TempDir))
		err = fmt.Errorf("%s %s: the collection %s is missing: %w", op, w.name, TempDir, storage.ErrUnavailable)
	default:
		err = statusError(op, w.name+": sending the data", resp)
	}
	// Unblock a Write waiting on a server that answered early.
	pr.CloseWithError(cmpErr(err, io.ErrClosedPipe))
	w.putDone <- err
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// wait returns the outcome of the PUT, once it has ended.
func (w *writer) wait() error {
	if !w.waited {
		w.putErr = <-w.putDone
		w.waited = true
	}
	return w.putErr
}

// Write implements storage.Writer.
func (w *writer) Write(p []byte) (int, error) {
	if w.state != open {
		return 0, fmt.Errorf("writing %s: the writer is closed: %w", w.name, storage.ErrInvalidArgument)
	}
	n, err := w.pw.Write(p)
	w.n += int64(n)
	if err != nil {
		// The PUT has ended early: say why.
		if perr := w.wait(); perr != nil {
			return n, perr
		}
		if cerr := w.ctx.Err(); cerr != nil {
			return n, fmt.Errorf("writing %s: %w", w.name, cerr)
		}
		return n, fmt.Errorf("writing %s: the server ended the upload early: %w", w.name, storage.ErrUnavailable)
	}
	return n, nil
}

// Close implements storage.Writer: it ends the PUT, checks what the
// server stored and MOVEs it to its name. On any error the temporary
// resource is removed and a previous object of that name is unchanged.
func (w *writer) Close() error {
	const op = "writing"
	switch w.state {
	case closed:
		return fmt.Errorf("%s %s: Close called twice: %w", op, w.name, storage.ErrInvalidArgument)
	case aborted:
		return fmt.Errorf("%s %s: Close after Abort: %w", op, w.name, storage.ErrInvalidArgument)
	}
	w.state = closed
	w.pw.Close()
	err := w.wait()
	if err == nil {
		if cerr := w.ctx.Err(); cerr != nil {
			err = fmt.Errorf("%s %s: %w", op, w.name, cerr)
		}
	}
	if err == nil {
		var e entry
		if e, err = w.s.statPath(w.ctx, op, w.name, w.tmp); err == nil && e.size != w.n {
			err = fmt.Errorf("%s %s: the server stored %d of the %d bytes sent: %w", op, w.name, e.size, w.n, storage.ErrUnavailable)
		}
	}
	if err == nil {
		err = w.s.commit(w.ctx, op, w.name, w.tmp, w.opts.IfNotExists)
	}
	w.cancel()
	if err != nil {
		w.cleanup()
		return err
	}
	return nil
}

// Abort implements storage.Writer. After Close it does nothing.
func (w *writer) Abort() error {
	if w.state != open {
		return nil
	}
	w.state = aborted
	if w.ctx.Err() == nil {
		// End the upload cleanly and let the server answer before the
		// DELETE: a cancelled PUT may still be writing the temporary
		// resource on the server after the DELETE found nothing, and
		// leave it behind. The bytes were sent already.
		w.pw.Close()
	} else {
		w.pw.CloseWithError(errAborted)
	}
	w.wait()
	w.cancel()
	return w.cleanup()
}

// cleanup removes the temporary resource, even when ctx is done.
func (w *writer) cleanup() error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), cleanupTimeout)
	defer cancel()
	return w.s.delete(ctx, "aborting the write of", w.name, w.tmp, false)
}

// commit MOVEs the temporary resource tmp to name.
func (s *Store) commit(ctx context.Context, op, name, tmp string, ifNotExists bool) error {
	dst := s.abs(name)
	parent, _ := parentOf(dst)
	if err := s.ensureCollection(ctx, op, name, parent); err != nil {
		return err
	}
	if !ifNotExists {
		// MOVE with Overwrite: T replaces a collection with everything in
		// it; a name that is a prefix of other objects must not do that.
		if _, err := s.clearCollection(ctx, op, name, dst); err != nil {
			return err
		}
	}
	target, dest := s.url(tmp, false), s.url(dst, false)
	overwrite := "T"
	if ifNotExists {
		overwrite = "F"
	}
	for attempt := 0; ; attempt++ {
		resp, err := s.send(ctx, notPerformed, func() (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, "MOVE", target, nil)
			if err != nil {
				return nil, err
			}
			req.Header.Set("Destination", dest)
			req.Header.Set("Overwrite", overwrite)
			return req, nil
		})
		if err != nil {
			return fmt.Errorf("%s %s: moving into place: %w", op, name, err)
		}
		switch resp.StatusCode {
		case http.StatusCreated, http.StatusNoContent, http.StatusOK:
			drain(resp)
			return nil
		case http.StatusPreconditionFailed:
			drain(resp)
			if attempt == 0 {
				// Perhaps only an empty collection, left by deletes.
				if removed, err := s.clearCollection(ctx, op, name, dst); err != nil {
					return err
				} else if removed {
					continue
				}
			}
			return fmt.Errorf("%s %s: %w", op, name, storage.ErrAlreadyExists)
		case http.StatusConflict, http.StatusForbidden:
			// The parent may have vanished since it was cached
			// (x/net/webdav answers 403 then).
			if attempt == 0 {
				drain(resp)
				s.dirs.Clear()
				if err := s.ensureCollection(ctx, op, name, parent); err != nil {
					return err
				}
				continue
			}
		}
		return statusError(op, name+": moving into place", resp)
	}
}

// clearCollection deletes a collection at abs that holds no object, and
// refuses one that does: an object cannot replace it.
func (s *Store) clearCollection(ctx context.Context, op, name, abs string) (removed bool, err error) {
	e, err := s.statPath(ctx, op, name, abs)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	case !e.dir:
		return false, nil
	}
	has, err := s.hasObject(ctx, op, name+"/")
	if err != nil {
		return false, err
	}
	if has {
		return false, fmt.Errorf("%s %s: objects exist below %s/, so it cannot also be an object: %w", op, name, name, storage.ErrAlreadyExists)
	}
	if err := s.delete(ctx, op, name, abs, true); err != nil {
		return false, err
	}
	s.dirs.Clear()
	return true, nil
}
