// Package cloud routes a storage URI to the storage.Store that serves it.
// A Registry maps URI schemes to Openers; the built-in local schemes
// (nodelocal://, file://) are added with RegisterLocal, and storage
// plugins register their schemes when the host discovers them.
//
// Errors from Open name the URI with the values of secret-looking query
// parameters and any password removed, so they can go into job records
// and logs.
package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/cairnbackup/cairn/core/redact"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// Opener opens the store a parsed URI names. It validates everything in
// the URI it does not understand and refuses it with an error wrapping
// storage.ErrInvalidArgument. Its errors must not contain secrets from
// the URI; Open adds the redacted URI itself.
type Opener func(ctx context.Context, u *url.URL) (storage.Store, error)

// Registry maps URI schemes to Openers. It is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	openers map[string]Opener
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{openers: map[string]Opener{}}
}

// Register makes open serve URIs of scheme (matched case-insensitively).
// Registering a scheme twice, an empty scheme or a nil Opener is a
// programming error and panics.
func (r *Registry) Register(scheme string, open Opener) {
	scheme = strings.ToLower(scheme)
	if scheme == "" || open == nil {
		panic("cloud: Register with an empty scheme or a nil Opener")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.openers[scheme]; ok {
		panic(fmt.Sprintf("cloud: scheme %q registered twice", scheme))
	}
	r.openers[scheme] = open
}

// Override makes open serve URIs of scheme, replacing the Opener
// registered for it, if any: a storage plugin installed for a built-in
// scheme (file://) takes it over. It reports whether one was replaced.
// An empty scheme or a nil Opener panics, as with Register.
func (r *Registry) Override(scheme string, open Opener) (replaced bool) {
	scheme = strings.ToLower(scheme)
	if scheme == "" || open == nil {
		panic("cloud: Override with an empty scheme or a nil Opener")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, replaced = r.openers[scheme]
	r.openers[scheme] = open
	return replaced
}

// Schemes returns the registered schemes, sorted.
func (r *Registry) Schemes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.openers))
	for s := range r.openers {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Open parses uri and opens the store its scheme's Opener returns. A URI
// that does not parse, has no scheme or an unknown one gives an error
// wrapping storage.ErrInvalidArgument; an unknown scheme's error lists the
// schemes on offer. Every error names the URI redacted.
func (r *Registry) Open(ctx context.Context, uri string) (storage.Store, error) {
	shown := redactURI(uri)
	u, err := url.Parse(uri)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its message repeats the URI unredacted
		}
		return nil, fmt.Errorf("opening %s: parsing URI: %v: %w", shown, err, storage.ErrInvalidArgument)
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("opening %s: URI has no scheme (want one of %s): %w",
			shown, strings.Join(r.Schemes(), ", "), storage.ErrInvalidArgument)
	}
	r.mu.RLock()
	open, ok := r.openers[u.Scheme]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("opening %s: unknown scheme %q (want one of %s): %w",
			shown, u.Scheme, strings.Join(r.Schemes(), ", "), storage.ErrInvalidArgument)
	}
	s, err := open(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", shown, err)
	}
	return s, nil
}

// redactURI shows uri with its secrets replaced (core/redact's rules). A
// URI that does not parse is shown by its scheme alone, and an empty one
// as "".
func redactURI(uri string) string {
	if uri == "" {
		return `""`
	}
	if _, err := url.Parse(uri); err != nil {
		if i := strings.Index(uri, ":"); i > 0 && !strings.ContainsAny(uri[:i], "/?#@") {
			return uri[:i] + ":<unparsable>"
		}
		return "<unparsable URI>"
	}
	return redact.URI(uri)
}
