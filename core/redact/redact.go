// Package redact removes secrets from strings before they are shown, logged
// or stored in a job description. It is pure: no I/O.
//
// The contract is conservative: when in doubt, hide it. A URI that does not
// parse is replaced as a whole, since it may hold a secret anywhere.
package redact

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
)

// Redacted replaces every secret.
const Redacted = "redacted"

// IsSecretParam reports whether a URI query parameter with this name holds
// a secret. Names are compared case-insensitively. Secrets are
// CREDENTIALS, and any name ending in _KEY, _SECRET, _TOKEN, _PASSWORD,
// _PASSPHRASE or _CREDENTIALS (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
// AZURE_ACCOUNT_KEY, AZURE_CLIENT_SECRET, BEARER_TOKEN, ...). Identifiers
// and names (AWS_ACCESS_KEY_ID, AZURE_ACCOUNT_NAME, ASSUME_ROLE) are not.
func IsSecretParam(name string) bool {
	n := strings.ToUpper(name)
	switch n {
	case "CREDENTIALS", "KEY", "SECRET", "TOKEN", "PASSWORD", "PASSPHRASE",
		// An Azure SAS token's signature.
		"SIG", "SIGNATURE":
		return true
	}
	if strings.HasSuffix(n, "_ID") || strings.HasSuffix(n, "_NAME") {
		return false
	}
	for _, suffix := range []string{"_KEY", "_SECRET", "_TOKEN", "_PASSWORD", "_PASSPHRASE", "_CREDENTIALS"} {
		if strings.HasSuffix(n, suffix) {
			return true
		}
	}
	return false
}

// URI returns s with the value of every secret query parameter (see
// IsSecretParam) and any userinfo password replaced by Redacted. Everything
// else is passed through byte for byte, so URI is the identity on a URI
// without secrets. A string that does not parse as a URI, or whose query
// does not parse, is returned as Redacted.
func URI(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return Redacted
	}
	if _, err := url.ParseQuery(u.RawQuery); err != nil {
		return Redacted
	}
	out := s
	// Userinfo password: between "scheme://user:" and the last "@" of the
	// authority.
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			out = redactPassword(out)
			if out == "" {
				return Redacted
			}
		}
	}
	if u.RawQuery == "" && !u.ForceQuery {
		return out
	}
	q := strings.IndexByte(out, '?')
	if q < 0 {
		return out
	}
	rest := out[q+1:]
	fragment := ""
	if h := strings.IndexByte(rest, '#'); h >= 0 {
		rest, fragment = rest[:h], rest[h:]
	}
	pairs := strings.Split(rest, "&")
	changed := false
	for i, pair := range pairs {
		rawName, _, hasValue := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return Redacted
		}
		if hasValue && IsSecretParam(name) {
			pairs[i] = rawName + "=" + Redacted
			changed = true
		}
	}
	if !changed {
		return out
	}
	return out[:q+1] + strings.Join(pairs, "&") + fragment
}

// redactPassword replaces the password of the authority's userinfo in s,
// or returns "" when the authority cannot be found.
func redactPassword(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return ""
	}
	start := i + 3
	end := len(s)
	if j := strings.IndexAny(s[start:], "/?#"); j >= 0 {
		end = start + j
	}
	authority := s[start:end]
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return ""
	}
	colon := strings.IndexByte(authority[:at], ':')
	if colon < 0 {
		return ""
	}
	return s[:start+colon+1] + Redacted + s[start+at:]
}

// URIString is a URI that may hold credentials. Every way of printing it
// (String, fmt verbs, JSON, slog) redacts it with URI; the raw value is only
// reachable by an explicit conversion, string(u).
type URIString string

var (
	_ fmt.Stringer   = URIString("")
	_ fmt.Formatter  = URIString("")
	_ fmt.GoStringer = URIString("")
	_ json.Marshaler = URIString("")
	_ slog.LogValuer = URIString("")
)

// String returns the redacted URI.
func (u URIString) String() string { return URI(string(u)) }

// GoString returns the redacted URI as a quoted Go string.
func (u URIString) GoString() string { return strconv.Quote(u.String()) }

// Format prints the redacted URI for every verb; %q quotes it.
func (u URIString) Format(f fmt.State, verb rune) {
	s := u.String()
	if verb == 'q' || (verb == 'v' && f.Flag('#')) {
		s = strconv.Quote(s)
	}
	_, _ = f.Write([]byte(s))
}

// MarshalJSON encodes the redacted URI as a JSON string.
func (u URIString) MarshalJSON() ([]byte, error) { return json.Marshal(u.String()) }

// LogValue makes slog print the redacted URI.
func (u URIString) LogValue() slog.Value { return slog.StringValue(u.String()) }
