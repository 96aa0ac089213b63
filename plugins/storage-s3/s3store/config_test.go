package s3store

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cairnbackup/cairn/sdk/storage"
)

func TestParseURI(t *testing.T) {
	t.Parallel()
	const keys = "AWS_ACCESS_KEY_ID=AKID&AWS_SECRET_ACCESS_KEY=s3cr3t-value"
	for _, tc := range []struct {
		uri  string
		want Config // compared field by field, uri excluded
		err  string // substring of the error; "" for success
	}{
		{uri: "s3://bkt?" + keys, want: Config{Bucket: "bkt", Auth: AuthSpecified, AccessKeyID: "AKID", SecretAccessKey: "s3cr3t-value", Region: "us-east-1"}},
		{uri: "s3://bkt/some/prefix/?" + keys + "&AWS_SESSION_TOKEN=tok&AWS_REGION=eu-west-3&AUTH=specified",
			want: Config{Bucket: "bkt", Prefix: "some/prefix", Auth: AuthSpecified, AccessKeyID: "AKID", SecretAccessKey: "s3cr3t-value", SessionToken: "tok", Region: "eu-west-3"}},
		{uri: "s3://bkt/p?AUTH=implicit", want: Config{Bucket: "bkt", Prefix: "p", Auth: AuthImplicit, Region: "us-east-1"}},
		{uri: "s3://bkt/p?AUTH=IMPLICIT&COCKROACH_LOCALITY=region%3Dus-east1", want: Config{Bucket: "bkt", Prefix: "p", Auth: AuthImplicit, Region: "us-east-1"}},
		{uri: "s3://bkt?AUTH=implicit&AWS_ENDPOINT=http://127.0.0.1:9000",
			want: Config{Bucket: "bkt", Auth: AuthImplicit, Region: "us-east-1", Endpoint: "http://127.0.0.1:9000", PathStyle: true}},
		{uri: "s3://bkt?AUTH=implicit&AWS_ENDPOINT=https://s3.example.com&AWS_USE_PATH_STYLE=false",
			want: Config{Bucket: "bkt", Auth: AuthImplicit, Region: "us-east-1", Endpoint: "https://s3.example.com"}},
		{uri: "s3://bkt?AUTH=implicit&AWS_USE_PATH_STYLE=true", want: Config{Bucket: "bkt", Auth: AuthImplicit, Region: "us-east-1", PathStyle: true}},
		{uri: "s3://bkt?AUTH=implicit&S3_STORAGE_CLASS=STANDARD_IA&AWS_SERVER_ENC_MODE=AES256",
			want: Config{Bucket: "bkt", Auth: AuthImplicit, Region: "us-east-1", StorageClass: types.StorageClassStandardIa, SSEMode: types.ServerSideEncryptionAes256}},
		{uri: "s3://bkt?AUTH=implicit&AWS_SERVER_ENC_MODE=aws:kms&AWS_SERVER_KMS_ID=arn:aws:kms:k",
			want: Config{Bucket: "bkt", Auth: AuthImplicit, Region: "us-east-1", SSEMode: types.ServerSideEncryptionAwsKms, KMSKeyID: "arn:aws:kms:k"}},

		{uri: "gs://bkt?" + keys, err: "scheme"},
		{uri: "s3:///p?" + keys, err: "no bucket"},
		{uri: "s3://user:pw@bkt/p", err: "not in the host"},
		{uri: "s3://bkt/a/../b?" + keys, err: "not a valid prefix"},
		{uri: "s3://bkt/a//b?" + keys, err: "not a valid prefix"},
		{uri: "s3://bkt?" + keys + "&BOGUS=1&AWS_SECRET=x", err: "unknown parameters AWS_SECRET, BOGUS"},
		{uri: "s3://bkt?" + keys + "&aws_region=x", err: "unknown parameters aws_region"},
		{uri: "s3://bkt?" + keys + "&AWS_REGION=a&AWS_REGION=b", err: "given more than once: AWS_REGION"},
		{uri: "s3://bkt", err: "no credentials"},
		{uri: "s3://bkt?AUTH=specified&AWS_ACCESS_KEY_ID=AKID", err: "needs both"},
		{uri: "s3://bkt?AWS_SECRET_ACCESS_KEY=s3cr3t-value", err: "needs both"},
		{uri: "s3://bkt?AUTH=implicit&" + keys, err: "AUTH=implicit takes no"},
		{uri: "s3://bkt?AUTH=implicit&AWS_SESSION_TOKEN=s3cr3t-value", err: "AUTH=implicit takes no"},
		{uri: "s3://bkt?AUTH=magic", err: "AUTH must be"},
		{uri: "s3://bkt?" + keys + "&AWS_ENDPOINT=127.0.0.1:9000", err: "AWS_ENDPOINT"},
		{uri: "s3://bkt?" + keys + "&AWS_ENDPOINT=ftp://host", err: "AWS_ENDPOINT"},
		{uri: "s3://bkt?" + keys + "&AWS_USE_PATH_STYLE=maybe", err: "AWS_USE_PATH_STYLE"},
		{uri: "s3://bkt?" + keys + "&S3_STORAGE_CLASS=CHEAP", err: "S3_STORAGE_CLASS"},
		{uri: "s3://bkt?" + keys + "&AWS_SERVER_ENC_MODE=rot13", err: "AWS_SERVER_ENC_MODE must be"},
		{uri: "s3://bkt?" + keys + "&AWS_SERVER_ENC_MODE=aws:kms", err: "needs AWS_SERVER_KMS_ID"},
		{uri: "s3://bkt?" + keys + "&AWS_SERVER_KMS_ID=k", err: "AWS_SERVER_KMS_ID needs"},
		{uri: "s3://bkt?" + keys + "&AWS_SERVER_ENC_MODE=AES256&AWS_SERVER_KMS_ID=k", err: "AWS_SERVER_KMS_ID needs"},
		{uri: "s3://bkt?AWS_SECRET_ACCESS_KEY=s3cr3t-value%zz", err: "query does not parse"},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			got, err := ParseURI(tc.uri)
			if tc.err != "" {
				if err == nil {
					t.Fatalf("ParseURI = %#v, want an error containing %q", got, tc.err)
				}
				if !errors.Is(err, storage.ErrInvalidArgument) {
					t.Errorf("error %v is not ErrInvalidArgument", err)
				}
				if !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error %q does not contain %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "s3cr3t-value") {
					t.Errorf("error %q holds the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURI: %v", err)
			}
			got.uri = ""
			if got != tc.want {
				t.Errorf("ParseURI =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

func TestConfigPrintsNoSecrets(t *testing.T) {
	t.Parallel()
	c, err := ParseURI("s3://bkt/p?AWS_ACCESS_KEY_ID=AKID&AWS_SECRET_ACCESS_KEY=s3cr3t-value&AWS_SESSION_TOKEN=t0ken-value")
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		out := fmt.Sprintf(verb, c)
		if strings.Contains(out, "s3cr3t-value") || strings.Contains(out, "t0ken-value") {
			t.Errorf("Sprintf(%s) = %s, holds a secret", verb, out)
		}
		if !strings.Contains(out, "AKID") {
			t.Errorf("Sprintf(%s) = %s, want the URI with the key id", verb, out)
		}
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"a": true, "a/b": true, "a/.b": true, "..a": true, "a.": true,
		"": false, "/": false, "/a": false, "a/": false, "a//b": false, ".": false, "..": false, "a/./b": false, "a/..": false,
	} {
		if got := validName(name); got != want {
			t.Errorf("validName(%q) = %v, want %v", name, got, want)
		}
	}
	for prefix, want := range map[string]bool{
		"": true, "a": true, "a/": true, "a/b": true, "a/.": true, "a/..": true, "..": true,
		"/": false, "../": false, "./": false, "a//": false, "a/../b": false,
	} {
		if got := possiblePrefix(prefix); got != want {
			t.Errorf("possiblePrefix(%q) = %v, want %v", prefix, got, want)
		}
	}
}
