package webdavstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// URI schemes served.
const (
	// SchemeHTTPS is webdav://host[:port]/path, spoken over HTTPS.
	SchemeHTTPS = "webdav"
	// SchemeHTTP is webdav+http://host[:port]/path, spoken over plain HTTP.
	SchemeHTTP = "webdav+http"
)

// URI query parameters.
const (
	// ParamUser is the user name for HTTP basic authentication.
	ParamUser = "WEBDAV_USER"
	// ParamPassword is the password for HTTP basic authentication. It is a
	// secret: no error or String carries it.
	ParamPassword = "WEBDAV_PASSWORD"
	// ParamInsecureSkipVerify ("true" or "false") turns off verification of
	// the server's TLS certificate. For test servers only.
	ParamInsecureSkipVerify = "WEBDAV_INSECURE_SKIP_VERIFY"
	// ParamLocality marks a locality-aware URI. cairn passes it through to
	// Open with the rest of the URI; it picks the locality bucket on
	// cairn's side and means nothing to the store, which accepts and
	// ignores it.
	ParamLocality = "COCKROACH_LOCALITY"
)

// Provider opens WebDAV stores. The zero value is ready to use.
type Provider struct {
	// Transport, when set, carries the requests instead of a clone of
	// http.DefaultTransport; tests use it to inject faults. When it is an
	// *http.Transport, a clone of it gets WEBDAV_INSECURE_SKIP_VERIFY
	// applied; any other RoundTripper is used as it is.
	Transport http.RoundTripper
}

var _ storage.Provider = Provider{}

// Schemes implements storage.Provider.
func (Provider) Schemes() []string { return []string{SchemeHTTPS, SchemeHTTP} }

// Open implements storage.Provider. The URI is
// webdav://host[:port]/path (HTTPS) or webdav+http://host[:port]/path,
// with the optional query parameters WEBDAV_USER, WEBDAV_PASSWORD and
// WEBDAV_INSECURE_SKIP_VERIFY (COCKROACH_LOCALITY is accepted and
// ignored: see ParamLocality). Credentials in the URI's user info are
// refused (they would end up in logs); unknown parameters are refused with
// storage.ErrInvalidArgument naming them.
//
// Open asks the server about the root collection, so that a wrong
// address or wrong credentials fail here rather than at the first
// backup. The root collection need not exist: it and its parents are
// created by the first write.
func (p Provider) Open(ctx context.Context, uri string) (storage.Store, error) {
	cfg, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	s, err := newStore(cfg, p.Transport)
	if err != nil {
		return nil, err
	}
	if err := s.probe(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// config is a parsed URI.
type config struct {
	scheme   string // "https" or "http"
	host     string
	root     string // decoded path of the root collection: "" or "/a/b"
	user     string
	password string
	insecure bool
}

// redacted is the URI as it may appear in errors and logs.
func (c config) redacted() string {
	scheme := SchemeHTTPS
	if c.scheme == "http" {
		scheme = SchemeHTTP
	}
	u := url.URL{Scheme: scheme, Host: c.host, Path: c.root + "/"}
	if c.user != "" || c.password != "" {
		u.RawQuery = ParamUser + "=" + url.QueryEscape(c.user) + "&" + ParamPassword + "=redacted"
	}
	return u.String()
}

func invalidURI(format string, args ...any) error {
	return fmt.Errorf("opening webdav store: "+format+": %w", append(args, storage.ErrInvalidArgument)...)
}

// parseURI validates uri. Its errors never quote the URI or a parameter's
// value: either may hold the password.
func parseURI(uri string) (config, error) {
	u, err := url.Parse(uri)
	if err != nil {
		// url.Parse quotes the whole URI in its error.
		return config{}, invalidURI("parsing the URI: malformed")
	}
	var c config
	switch strings.ToLower(u.Scheme) {
	case SchemeHTTPS:
		c.scheme = "https"
	case SchemeHTTP:
		c.scheme = "http"
	default:
		return config{}, invalidURI("scheme %q is not %s or %s", u.Scheme, SchemeHTTPS, SchemeHTTP)
	}
	if u.User != nil {
		return config{}, invalidURI("credentials in the URI's user info are not accepted; use %s and %s", ParamUser, ParamPassword)
	}
	if u.Opaque != "" || u.Host == "" {
		return config{}, invalidURI("the URI has no host")
	}
	if u.Fragment != "" {
		return config{}, invalidURI("the URI has a fragment")
	}
	c.host = u.Host
	c.root = path.Clean("/" + u.Path)
	if c.root == "/" {
		c.root = ""
	}

	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return config{}, invalidURI("parsing the query: malformed")
	}
	var unknown []string
	for k, v := range q {
		switch k {
		case ParamUser, ParamPassword, ParamInsecureSkipVerify, ParamLocality:
			if len(v) != 1 {
				return config{}, invalidURI("parameter %s is given %d times", k, len(v))
			}
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return config{}, invalidURI("unknown parameters %s", strings.Join(unknown, ", "))
	}
	c.user, c.password = q.Get(ParamUser), q.Get(ParamPassword)
	if c.password != "" && c.user == "" {
		return config{}, invalidURI("%s is set without %s", ParamPassword, ParamUser)
	}
	if v, ok := q[ParamInsecureSkipVerify]; ok {
		b, err := strconv.ParseBool(v[0])
		if err != nil {
			return config{}, invalidURI("%s is not true or false", ParamInsecureSkipVerify)
		}
		c.insecure = b
	}
	return c, nil
}

// httpClient builds the client for c. Redirects are not followed: a
// redirect of a PUT or MOVE cannot be replayed, and a redirected GET of
// a collection would read an index page as an object.
func httpClient(c config, rt http.RoundTripper) (*http.Client, error) {
	if rt == nil {
		t, ok := http.DefaultTransport.(*http.Transport)
		if !ok {
			return nil, errors.New("opening webdav store: http.DefaultTransport is not an *http.Transport")
		}
		rt = t
	}
	if t, ok := rt.(*http.Transport); ok {
		t = t.Clone()
		t.MaxIdleConnsPerHost = 32
		if c.insecure {
			if t.TLSClientConfig == nil {
				t.TLSClientConfig = &tls.Config{}
			}
			t.TLSClientConfig.InsecureSkipVerify = true
		}
		rt = t
	}
	return &http.Client{
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}
