package gcsstore

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/sdk/storage"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseURI(t *testing.T) {
	const secretKey = "-----BEGIN PRIVATE KEY-----\\nTOPSECRETKEYMATERIAL\\n-----END PRIVATE KEY-----\\n"
	sa := b64(`{"type":"service_account","client_email":"x@y.iam.gserviceaccount.com","private_key":"` + secretKey + `"}`)
	for _, tc := range []struct {
		uri      string
		bucket   string
		root     string
		auth     authMode
		endpoint string
		err      string // substring of the error; "" for success
	}{
		{uri: "gs://b?GCS_ENDPOINT=http://127.0.0.1:1/storage/v1/", bucket: "b", auth: authNone, endpoint: "http://127.0.0.1:1/storage/v1/"},
		{uri: "gs://b/?GCS_ENDPOINT=http://127.0.0.1:1", bucket: "b", auth: authNone, endpoint: "http://127.0.0.1:1/storage/v1/"},
		{uri: "gs://b/some/prefix?AUTH=implicit", bucket: "b", root: "some/prefix/", auth: authImplicit},
		{uri: "gs://b/some/prefix/?AUTH=implicit&COCKROACH_LOCALITY=region%3Deu", bucket: "b", root: "some/prefix/", auth: authImplicit},
		{uri: "gs://b/p?AUTH=specified&CREDENTIALS=" + sa, bucket: "b", root: "p/", auth: authSpecified},
		{uri: "gs://b/p?CREDENTIALS=" + sa, bucket: "b", root: "p/", auth: authSpecified},
		{uri: "GS://b?AUTH=IMPLICIT", bucket: "b", auth: authImplicit},
		{uri: "gs://b?CREDENTIALS=" + sa + "&GCS_ENDPOINT=http://h:1/storage/v1/", bucket: "b", auth: authSpecified, endpoint: "http://h:1/storage/v1/"},

		{uri: "gs://b", err: "no credentials"},
		{uri: "gs://b?AUTH=implicit&FOO=1&BAR=2", err: "unknown parameters BAR, FOO"},
		{uri: "gs://b?AUTH=implicit&auth=implicit", err: "unknown parameters auth"},
		{uri: "gs://b?AUTH=implicit&AUTH=specified", err: "given more than once: AUTH"},
		{uri: "gs://b?AUTH=sometimes", err: "AUTH must be"},
		{uri: "gs://b?AUTH=specified", err: "needs CREDENTIALS"},
		{uri: "gs://b?AUTH=implicit&CREDENTIALS=" + sa, err: "takes no CREDENTIALS"},
		{uri: "gs://b?CREDENTIALS=" + "%%%", err: "query does not parse"},
		{uri: "gs://b?CREDENTIALS=not*base64", err: "not base64"},
		{uri: "gs://b?CREDENTIALS=" + b64("TOPSECRET plain text"), err: "not a JSON object"},
		{uri: "gs://b?CREDENTIALS=" + b64(`{"private_key":"TOPSECRET"}`), err: `no "type" field`},
		{uri: "gs://b?CREDENTIALS=" + b64(`{"type":"external_account","private_key":"TOPSECRET"}`), err: `type "external_account" is not supported`},
		{uri: "gs://b?CREDENTIALS=" + b64(`{"type":"TOPSECRET!!"}`), err: `type that is not supported`},
		{uri: "s3://b?AUTH=implicit", err: "scheme"},
		{uri: "gs:///p?AUTH=implicit", err: "no bucket"},
		{uri: "gs://user:TOPSECRET@b?AUTH=implicit", err: "no user information"},
		{uri: "gs://b/a//c?AUTH=implicit", err: "empty element"},
		{uri: "gs://b/a/../c?AUTH=implicit", err: `".." element`},
		{uri: "gs://b?GCS_ENDPOINT=ftp://h/", err: "GCS_ENDPOINT must be"},
		{uri: "gs://b\x7f?CREDENTIALS=TOPSECRET", err: "not a valid URI"},
	} {
		c, err := parseURI(tc.uri)
		if tc.err != "" {
			if err == nil {
				t.Errorf("parseURI(%q) = nil error, want %q", tc.uri, tc.err)
				continue
			}
			if !errors.Is(err, storage.ErrInvalidArgument) {
				t.Errorf("parseURI(%q) = %v, want ErrInvalidArgument", tc.uri, err)
			}
			if !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseURI(%q) = %v, want it to say %q", tc.uri, err, tc.err)
			}
			if strings.Contains(err.Error(), "TOPSECRET") {
				t.Errorf("parseURI(%q) error shows the secret: %v", tc.uri, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseURI(%q): %v", tc.uri, err)
			continue
		}
		if c.bucket != tc.bucket || c.root != tc.root || c.auth != tc.auth || c.endpoint != tc.endpoint {
			t.Errorf("parseURI(%q) = bucket %q root %q auth %v endpoint %q; want %q %q %v %q",
				tc.uri, c.bucket, c.root, c.auth, c.endpoint, tc.bucket, tc.root, tc.auth, tc.endpoint)
		}
		if s := c.String(); strings.Contains(s, "TOPSECRET") || (strings.Contains(tc.uri, "CREDENTIALS") && strings.Contains(s, sa)) {
			t.Errorf("config.String() shows the secret: %s", s)
		}
	}
}

func TestValidListPrefix(t *testing.T) {
	for prefix, want := range map[string]bool{
		"": true, "a": true, "a/": true, "a/b": true, "a.": true, ".": true, "..": true, "a/..": true,
		"/": false, "../": false, "./": false, "a//": false, "../../": false, "a/./b": false,
	} {
		if got := validListPrefix(prefix); got != want {
			t.Errorf("validListPrefix(%q) = %v, want %v", prefix, got, want)
		}
	}
}
