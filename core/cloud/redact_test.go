package cloud

import (
	"strings"
	"testing"
)

func TestRedactURI(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"nodelocal://1/a", "nodelocal://1/a"},
		{"s3://b/p?AWS_ACCESS_KEY_ID=AKIA&AWS_SECRET_ACCESS_KEY=abc&AWS_REGION=us",
			"s3://b/p?AWS_ACCESS_KEY_ID=AKIA&AWS_SECRET_ACCESS_KEY=redacted&AWS_REGION=us"},
		{"azure://c/p?AZURE_ACCOUNT_NAME=n&AZURE_ACCOUNT_KEY=k", "azure://c/p?AZURE_ACCOUNT_NAME=n&AZURE_ACCOUNT_KEY=redacted"},
		{"gs://b/p?CREDENTIALS=e30%3D&AUTH=specified", "gs://b/p?CREDENTIALS=redacted&AUTH=specified"},
		{"azure://c/p?sv=1&sig=abc%2Bdef", "azure://c/p?sv=1&sig=redacted"},
		{"s3://user:pass@b/p", "s3://user:redacted@b/p"},
		{"s3://b/p?AWS_SESSION_TOKEN=t&flag", "s3://b/p?AWS_SESSION_TOKEN=redacted&flag"},
		{"x://b/p?COCKROACH_LOCALITY=region%3Dus", "x://b/p?COCKROACH_LOCALITY=region%3Dus"},
		{"s3://b/p?AWS_SECRET_ACCESS_KEY=a b%zz", "redacted"},
		{"s3://b/p%zz?AWS_SECRET_ACCESS_KEY=abc", "s3:<unparsable>"},
		{"%zz", "<unparsable URI>"},
	} {
		got := redactURI(tc.in)
		if got != tc.want {
			t.Errorf("redactURI(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, secret := range []string{"abc", "pass@", "e30", "=k"} {
			if strings.Contains(got, secret) {
				t.Errorf("redactURI(%q) = %q still shows %q", tc.in, got, secret)
			}
		}
	}
}
