package webdavstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// Retry schedule for calls that may be repeated: up to maxAttempts tries,
// sleeping a jittered minBackoff, 2×minBackoff, ... (at most maxBackoff,
// or what a Retry-After header asks, up to maxRetryAfter) in between.
const (
	maxAttempts   = 5
	minBackoff    = 50 * time.Millisecond
	maxBackoff    = 2 * time.Second
	maxRetryAfter = 10 * time.Second
)

// retryPolicy says which failures of a request may be retried.
type retryPolicy int

const (
	// idempotent requests (PROPFIND, GET, DELETE, MKCOL) are retried after
	// transport errors and retryable statuses.
	idempotent retryPolicy = iota
	// notPerformed requests (MOVE) are retried only after statuses that
	// say the server did nothing: 423 Locked, 429, 503.
	notPerformed
	// once requests (the streaming PUT, whose body cannot be replayed)
	// are never retried here; the host retries the whole write.
	once
)

func (p retryPolicy) retries(status int) bool {
	switch p {
	case idempotent:
		return status == http.StatusLocked || status == http.StatusTooManyRequests ||
			(status >= 500 && status != http.StatusNotImplemented &&
				status != http.StatusHTTPVersionNotSupported && status != http.StatusInsufficientStorage)
	case notPerformed:
		return status == http.StatusLocked || status == http.StatusTooManyRequests ||
			status == http.StatusServiceUnavailable
	}
	return false
}

// send performs the request that mk builds, retrying as p allows. It
// returns the last response, whatever its status; the caller closes its
// body. A transport error comes back wrapped in storage.ErrUnavailable,
// or as the context's error when ctx is done.
func (s *Store) send(ctx context.Context, p retryPolicy, mk func() (*http.Request, error)) (*http.Response, error) {
	for attempt := 1; ; attempt++ {
		req, err := mk()
		if err != nil {
			return nil, err
		}
		if s.cfg.user != "" {
			req.SetBasicAuth(s.cfg.user, s.cfg.password)
		}
		resp, err := s.client.Do(req)
		var wait time.Duration
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil && isCertificateError(err):
			return nil, fmt.Errorf("%w (see %s): %w", transportError(err), ParamInsecureSkipVerify, storage.ErrPermissionDenied)
		case err != nil:
			err = fmt.Errorf("%w: %w", transportError(err), storage.ErrUnavailable)
			if p != idempotent || attempt >= maxAttempts {
				return nil, err
			}
		case p.retries(resp.StatusCode) && attempt < maxAttempts:
			wait = retryAfter(resp)
			drain(resp)
		default:
			return resp, nil
		}
		if wait == 0 {
			d := min(maxBackoff, minBackoff<<(attempt-1))
			wait = d/2 + rand.N(d/2+1)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// isCertificateError reports whether err is a failure to verify the
// server's TLS certificate, which no retry cures.
func isCertificateError(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}

// transportError unwraps the *url.Error of http.Client.Do, which repeats
// the method and the URL (the URL carries no credentials, but the host is
// already in every message's context).
func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func retryAfter(resp *http.Response) time.Duration {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return min(time.Duration(secs)*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), maxRetryAfter)
	}
	return 0
}

// drain reads a little of an unwanted body so the connection can be
// reused, and closes it.
func drain(resp *http.Response) {
	io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
}

// statusError maps an unexpected HTTP status to the storage errors:
// 401/403 permission denied, 404 not found, 409/412 already exists,
// 413/507 resource exhausted, 423/429/5xx unavailable (retryable), other
// 4xx and 3xx invalid argument. It closes resp's body.
func statusError(op, name string, resp *http.Response) error {
	drain(resp)
	var kind error
	switch c := resp.StatusCode; {
	case c == http.StatusUnauthorized || c == http.StatusForbidden:
		kind = storage.ErrPermissionDenied
	case c == http.StatusNotFound:
		kind = storage.ErrNotFound
	case c == http.StatusPreconditionFailed || c == http.StatusConflict:
		kind = storage.ErrAlreadyExists
	case c == http.StatusInsufficientStorage || c == http.StatusRequestEntityTooLarge:
		kind = storage.ErrResourceExhausted
	case c == http.StatusLocked || c == http.StatusTooManyRequests || c >= 500:
		kind = storage.ErrUnavailable
	default:
		kind = storage.ErrInvalidArgument
	}
	return fmt.Errorf("%s %s: server answered %s: %w", op, name, resp.Status, kind)
}

// entry is one resource of a PROPFIND answer.
type entry struct {
	path string // decoded absolute path, without a trailing slash
	dir  bool
	size int64
	mod  time.Time
}

// propfindBody asks only for what cairn uses; "allprop" would make some
// servers (Nextcloud) compute expensive properties for every child.
const propfindBody = `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>`

type davResponse struct {
	Href     string        `xml:"DAV: href"`
	Propstat []davPropstat `xml:"DAV: propstat"`
}

type davPropstat struct {
	Status string `xml:"DAV: status"`
	Prop   struct {
		ResourceType struct {
			Collection *struct{} `xml:"DAV: collection"`
		} `xml:"DAV: resourcetype"`
		ContentLength string `xml:"DAV: getcontentlength"`
		LastModified  string `xml:"DAV: getlastmodified"`
	} `xml:"DAV: prop"`
}

// propfind asks for the properties of abs (depth "0") or of abs and its
// children (depth "1"). On a status other than 207 it returns the status
// and the mapped error. Entries are returned in the server's order.
func (s *Store) propfind(ctx context.Context, op, name, abs string, collection bool, depth string) ([]entry, int, error) {
	target := s.url(abs, collection)
	resp, err := s.send(ctx, idempotent, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, "PROPFIND", target, strings.NewReader(propfindBody))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Depth", depth)
		req.Header.Set("Content-Type", `application/xml; charset="utf-8"`)
		return req, nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", op, name, err)
	}
	// 200 is what x/net/webdav sends, with no body, when the resource
	// vanished while it answered: an empty multistatus.
	if resp.StatusCode != http.StatusMultiStatus && resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, statusError(op, name, resp)
	}
	defer resp.Body.Close()
	// Decode one <response> at a time: memory grows with the number of
	// children of one collection, never with the whole tree.
	var out []entry
	dec := xml.NewDecoder(resp.Body)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, 0, fmt.Errorf("%s %s: %w", op, name, ctx.Err())
			}
			return nil, 0, fmt.Errorf("%s %s: decoding the PROPFIND answer: %v: %w", op, name, err, storage.ErrUnavailable)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Space != "DAV:" || se.Name.Local != "response" {
			continue
		}
		var r davResponse
		if err := dec.DecodeElement(&r, &se); err != nil {
			return nil, 0, fmt.Errorf("%s %s: decoding the PROPFIND answer: %v: %w", op, name, err, storage.ErrUnavailable)
		}
		if e, ok := r.entry(); ok {
			out = append(out, e)
		}
	}
	return out, resp.StatusCode, nil
}

func (r davResponse) entry() (entry, bool) {
	u, err := url.Parse(strings.TrimSpace(r.Href))
	if err != nil {
		return entry{}, false
	}
	e := entry{path: strings.TrimSuffix(u.Path, "/")}
	found := false
	for _, ps := range r.Propstat {
		if f := strings.Fields(ps.Status); len(f) < 2 || f[1] != "200" {
			continue
		}
		found = true
		p := ps.Prop
		if p.ResourceType.Collection != nil {
			e.dir = true
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(p.ContentLength), 10, 64); err == nil {
			e.size = n
		}
		if t, err := http.ParseTime(strings.TrimSpace(p.LastModified)); err == nil {
			e.mod = t
		}
	}
	return e, found
}

// url is the escaped URL of the decoded absolute path abs; collections
// get a trailing slash, which some servers require.
func (s *Store) url(abs string, collection bool) string {
	parts := strings.Split(abs, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	u := s.base + strings.Join(parts, "/")
	if collection && !strings.HasSuffix(u, "/") {
		u += "/"
	}
	if u == s.base {
		u += "/"
	}
	return u
}

// abs is the decoded absolute path of rel, a name or a collection
// relative to the root ("" is the root itself).
func (s *Store) abs(rel string) string {
	rel = strings.TrimSuffix(rel, "/")
	if rel == "" {
		return s.cfg.root
	}
	return s.cfg.root + "/" + rel
}

// parentOf returns the parent of an absolute path, and false at the
// server's root.
func parentOf(abs string) (string, bool) {
	if abs == "" || abs == "/" {
		return "", false
	}
	p := path.Dir(abs)
	if p == "/" {
		p = ""
	}
	return p, true
}
