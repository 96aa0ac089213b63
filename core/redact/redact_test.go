package redact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestURI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"nodelocal://1/backups", "nodelocal://1/backups"},
		{"nodelocal://1/a b/c", "nodelocal://1/a b/c"}, // passed through, not re-encoded
		{"s3://bucket/path?AWS_ACCESS_KEY_ID=AKIA&AWS_SECRET_ACCESS_KEY=shh",
			"s3://bucket/path?AWS_ACCESS_KEY_ID=AKIA&AWS_SECRET_ACCESS_KEY=redacted"},
		{"s3://b/p?aws_secret_access_key=shh&AWS_SESSION_TOKEN=tok&AUTH=specified",
			"s3://b/p?aws_secret_access_key=redacted&AWS_SESSION_TOKEN=redacted&AUTH=specified"},
		{"azure-blob://c/p?AZURE_ACCOUNT_NAME=acct&AZURE_ACCOUNT_KEY=k%3D%3D",
			"azure-blob://c/p?AZURE_ACCOUNT_NAME=acct&AZURE_ACCOUNT_KEY=redacted"},
		{"azure-blob://c/p?AZURE_CLIENT_ID=id&AZURE_CLIENT_SECRET=s&AZURE_TENANT_ID=t",
			"azure-blob://c/p?AZURE_CLIENT_ID=id&AZURE_CLIENT_SECRET=redacted&AZURE_TENANT_ID=t"},
		{"gs://b/p?AUTH=specified&CREDENTIALS=eyJrZXki", "gs://b/p?AUTH=specified&CREDENTIALS=redacted"},
		{"gs://b/p?BEARER_TOKEN=abc", "gs://b/p?BEARER_TOKEN=redacted"},
		{"s3://b/p?ASSUME_ROLE=arn:aws:iam::1:role/r", "s3://b/p?ASSUME_ROLE=arn:aws:iam::1:role/r"},
		{"s3://b/p?COCKROACH_LOCALITY=region%3Dus-east1&AWS_SECRET_ACCESS_KEY=x#frag",
			"s3://b/p?COCKROACH_LOCALITY=region%3Dus-east1&AWS_SECRET_ACCESS_KEY=redacted#frag"},
		{"s3://b/p?X_PASSWORD=1&db_password=2&my_token=3", "s3://b/p?X_PASSWORD=redacted&db_password=redacted&my_token=redacted"},
		{"s3://b/p?AWS%5FSECRET%5FACCESS%5FKEY=x", "s3://b/p?AWS%5FSECRET%5FACCESS%5FKEY=redacted"},
		{"s3://b/p?AWS_SECRET_ACCESS_KEY", "s3://b/p?AWS_SECRET_ACCESS_KEY"}, // no value to hide
		{"http://user:pw@host:8080/x?y=1", "http://user:redacted@host:8080/x?y=1"},
		{"http://user@host/x", "http://user@host/x"},
		{"http://us%40er:p%40ss@host/x", "http://us%40er:redacted@host/x"},
		// Does not parse: hidden entirely.
		{"s3://b/p?AWS_SECRET_ACCESS_KEY=x%zz", Redacted},
		{"http://[::1/x", Redacted},
		{"s3://b/\x7f?x", Redacted},
		{"s3://b/p?a=1;b=2", Redacted},
	} {
		if got := URI(tc.in); got != tc.want {
			t.Errorf("URI(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestIsSecretParam(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"AWS_SECRET_ACCESS_KEY": true, "aws_session_token": true, "AZURE_ACCOUNT_KEY": true,
		"AZURE_CLIENT_SECRET": true, "CREDENTIALS": true, "BEARER_TOKEN": true, "password": true,
		"AWS_ACCESS_KEY_ID": false, "AZURE_ACCOUNT_NAME": false, "ASSUME_ROLE": false,
		"AUTH": false, "COCKROACH_LOCALITY": false, "AWS_REGION": false, "KEY_ID": false,
	} {
		if got := IsSecretParam(name); got != want {
			t.Errorf("IsSecretParam(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestURIString(t *testing.T) {
	t.Parallel()
	u := URIString("s3://b/p?AWS_SECRET_ACCESS_KEY=hunter2")
	const want = "s3://b/p?AWS_SECRET_ACCESS_KEY=redacted"
	check := func(what, got string) {
		t.Helper()
		if strings.Contains(got, "hunter2") || !strings.Contains(got, want) {
			t.Errorf("%s = %q, want it to hold %q and no secret", what, got, want)
		}
	}
	check("String", u.String())
	for _, verb := range []string{"%s", "%v", "%q", "%#v", "%+v", "%x", "%10s"} {
		check(verb, fmt.Sprintf(verb, u))
	}
	check("struct %+v", fmt.Sprintf("%+v", struct{ URI URIString }{u}))
	if got := fmt.Sprintf("%q", u); got != `"`+want+`"` {
		t.Errorf("%%q = %s", got)
	}
	b, err := json.Marshal(struct {
		URI URIString `json:"uri"`
	}{u})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"uri":"`+want+`"}` {
		t.Errorf("json = %s", got)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "uri", u)
	check("slog", buf.String())
	if string(u) != "s3://b/p?AWS_SECRET_ACCESS_KEY=hunter2" {
		t.Error("conversion lost the raw value")
	}
}
