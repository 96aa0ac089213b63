package gcsstore

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/cairnbackup/cairn/core/redact"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// Scheme is the URI scheme served: gs://bucket/path.
const Scheme = "gs"

// URI query parameters.
const (
	// ParamAuth chooses where credentials come from: "specified" (the
	// CREDENTIALS parameter) or "implicit" (Application Default
	// Credentials of the plugin's environment).
	ParamAuth = "AUTH"
	// ParamCredentials is a base64-encoded JSON key file (a secret).
	ParamCredentials = "CREDENTIALS"
	// ParamEndpoint overrides the JSON API endpoint, for emulators, e.g.
	// http://127.0.0.1:4443/storage/v1/.
	ParamEndpoint = "GCS_ENDPOINT"
	// ParamLocality is set by cairn on locality-aware URIs; the store
	// ignores it.
	ParamLocality = "COCKROACH_LOCALITY"
)

// Values of AUTH.
const (
	AuthSpecified = "specified"
	AuthImplicit  = "implicit"
)

var knownParams = []string{ParamAuth, ParamCredentials, ParamEndpoint, ParamLocality}

// credentialTypes are the key file types accepted in CREDENTIALS. Types
// that make the client fetch tokens from URLs named in the file
// (external_account, impersonated_service_account) are refused: a URI is
// not a trusted enough source for them.
var credentialTypes = []string{"service_account", "authorized_user"}

// authMode is how the client authenticates.
type authMode int

const (
	authNone      authMode = iota // emulator without CREDENTIALS
	authSpecified                 // CREDENTIALS
	authImplicit                  // Application Default Credentials
)

// config is a parsed gs:// URI.
type config struct {
	uri    redact.URIString
	bucket string
	// root is the key prefix of every object: "" or a path ending in "/".
	root     string
	auth     authMode
	credType string
	// credentials is the decoded key file; secret.
	credentials []byte
	// endpoint is the JSON API endpoint override, or "".
	endpoint string
	// secrets are strings that must never appear in an error or a log
	// line: the raw CREDENTIALS value, the decoded file and its secret
	// fields.
	secrets []string
}

func (c *config) String() string { return c.uri.String() }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("parsing the store URI: "+format+": %w", append(args, storage.ErrInvalidArgument)...)
}

// parseURI validates uri. Its errors never include the URI's secrets: the
// URI is only shown redacted, and CREDENTIALS problems are described
// without its content.
func parseURI(uri string) (*config, error) {
	c := &config{uri: redact.URIString(uri)}
	u, err := url.Parse(uri)
	if err != nil {
		// url.Parse quotes its input; say nothing of it.
		return nil, invalidf("%s is not a valid URI", c.uri)
	}
	if !strings.EqualFold(u.Scheme, Scheme) {
		return nil, invalidf("%s: scheme %q is not %s://", c.uri, u.Scheme, Scheme)
	}
	if u.User != nil {
		return nil, invalidf("%s: gs:// URIs take no user information", c.uri)
	}
	if u.Fragment != "" || u.Opaque != "" {
		return nil, invalidf("%s: want gs://bucket/path", c.uri)
	}
	c.bucket = u.Host
	if c.bucket == "" {
		return nil, invalidf("%s: no bucket", c.uri)
	}
	if strings.ContainsAny(c.bucket, ":@") {
		return nil, invalidf("%s: bucket %q is not a bucket name", c.uri, c.bucket)
	}
	if p := strings.TrimPrefix(u.Path, "/"); strings.TrimSuffix(p, "/") != "" {
		p = strings.TrimSuffix(p, "/")
		if err := validName(p); err != nil {
			return nil, invalidf("%s: path %q: %v", c.uri, p, err)
		}
		c.root = p + "/"
	}

	q, err := storage.ParseParams(u.RawQuery, knownParams...)
	if err != nil {
		return nil, invalidf("%s: %v", c.uri, err)
	}

	if raw := q.Get(ParamCredentials); raw != "" {
		c.secrets = append(c.secrets, raw, url.QueryEscape(raw))
		creds, typ, secrets, err := decodeCredentials(raw)
		if err != nil {
			return nil, invalidf("%s: %v", c.uri, err)
		}
		c.credentials, c.credType = creds, typ
		c.secrets = append(c.secrets, secrets...)
	}

	if ep := q.Get(ParamEndpoint); ep != "" {
		e, err := url.Parse(ep)
		if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" || e.User != nil {
			return nil, invalidf("%s: %s must be an http or https URL with a host", c.uri, ParamEndpoint)
		}
		if e.Path == "" || e.Path == "/" {
			e.Path = "/storage/v1/"
		}
		if !strings.HasSuffix(e.Path, "/") {
			e.Path += "/"
		}
		c.endpoint = e.String()
	}

	hasCreds := c.credentials != nil
	switch auth := strings.ToLower(q.Get(ParamAuth)); auth {
	case AuthSpecified:
		if !hasCreds {
			return nil, invalidf("%s: %s=%s needs %s (a base64-encoded JSON key)", c.uri, ParamAuth, AuthSpecified, ParamCredentials)
		}
		c.auth = authSpecified
	case AuthImplicit:
		if hasCreds {
			return nil, invalidf("%s: %s=%s takes no %s", c.uri, ParamAuth, AuthImplicit, ParamCredentials)
		}
		c.auth = authImplicit
	case "":
		switch {
		case hasCreds:
			c.auth = authSpecified
		case c.endpoint != "":
			c.auth = authNone
		default:
			return nil, invalidf("%s: no credentials: set %s=%s, or %s=%s with %s", c.uri,
				ParamAuth, AuthImplicit, ParamAuth, AuthSpecified, ParamCredentials)
		}
	default:
		return nil, invalidf("%s: %s must be %s or %s", c.uri, ParamAuth, AuthSpecified, AuthImplicit)
	}
	return c, nil
}

var plainWord = regexp.MustCompile(`^[a-z_]{1,40}$`)

// decodeCredentials decodes a base64 key file and checks that it is JSON
// with an accepted "type". It returns the file, its type, and the strings
// in it that are secret. Its errors describe the problem, never the
// content.
func decodeCredentials(raw string) (creds []byte, typ string, secrets []string, err error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(strings.TrimSpace(raw)); err == nil {
			creds = b
			break
		}
	}
	if creds == nil {
		return nil, "", nil, fmt.Errorf("decoding %s: not base64", ParamCredentials)
	}
	var fields map[string]any
	if err := json.Unmarshal(creds, &fields); err != nil {
		// json's errors quote bytes of the input: leave them out.
		return nil, "", nil, fmt.Errorf("decoding %s: the decoded value is not a JSON object", ParamCredentials)
	}
	typ, _ = fields["type"].(string)
	if typ == "" {
		return nil, "", nil, fmt.Errorf("decoding %s: the JSON key has no \"type\" field", ParamCredentials)
	}
	if !slices.Contains(credentialTypes, typ) {
		shown := "that"
		if plainWord.MatchString(typ) {
			shown = fmt.Sprintf("%q", typ)
		}
		return nil, "", nil, fmt.Errorf("decoding %s: credential type %s is not supported (want one of %s)",
			ParamCredentials, shown, strings.Join(credentialTypes, ", "))
	}
	secrets = append(secrets, string(creds))
	for _, k := range []string{"private_key", "private_key_id", "client_secret", "refresh_token"} {
		if v, ok := fields[k].(string); ok && len(v) >= 4 {
			secrets = append(secrets, v)
			// The JSON-escaped form, as it would appear in a quoted dump.
			if b, err := json.Marshal(v); err == nil {
				secrets = append(secrets, strings.Trim(string(b), `"`))
			}
		}
	}
	return creds, typ, secrets, nil
}

// validName enforces the naming rules of package storage.
func validName(name string) error { return storage.ValidateName(name) }

// validListPrefix reports whether some valid name can start with prefix:
// every element but the last (which may be partial) must be valid.
func validListPrefix(prefix string) bool {
	elems := strings.Split(prefix, "/")
	for _, elem := range elems[:len(elems)-1] {
		if elem == "" || elem == "." || elem == ".." {
			return false
		}
	}
	return true
}
