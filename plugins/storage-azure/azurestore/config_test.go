package azurestore

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/sdk/storage"
)

func TestParseURI(t *testing.T) {
	t.Parallel()
	const key = "a2V5LXZhbHVlLXRoYXQtaXMtc2VjcmV0"
	for _, tc := range []struct {
		uri     string
		want    Config // URI is not compared
		service string
		err     string // substring of the error; "" for success
	}{
		{
			uri:     "azure-blob://backups?AZURE_ACCOUNT_NAME=acct&AZURE_ACCOUNT_KEY=" + key,
			want:    Config{Container: "backups", AccountName: "acct", AccountKey: key, Environment: EnvPublic},
			service: "https://acct.blob.core.windows.net",
		},
		{
			uri:     "azure://backups/some/prefix/?AZURE_ACCOUNT_NAME=acct&AZURE_ACCOUNT_KEY=" + key + "&AZURE_ENVIRONMENT=AzureUSGovernmentCloud",
			want:    Config{Container: "backups", Root: "some/prefix", AccountName: "acct", AccountKey: key, Environment: EnvUSGovernment},
			service: "https://acct.blob.core.usgovcloudapi.net",
		},
		{
			uri:     "AZURE-BLOB://backups/p?AZURE_ACCOUNT_NAME=acct&AZURE_CLIENT_ID=id&AZURE_CLIENT_SECRET=shh&AZURE_TENANT_ID=tenant&AZURE_ENVIRONMENT=azurechinacloud&COCKROACH_LOCALITY=region%3Deu",
			want:    Config{Container: "backups", Root: "p", AccountName: "acct", Environment: EnvChina, ClientID: "id", ClientSecret: "shh", TenantID: "tenant"},
			service: "https://acct.blob.core.chinacloudapi.cn",
		},
		{
			uri:     "azure-blob://c-1/x?AZURE_ACCOUNT_NAME=devstoreaccount1&AZURE_ACCOUNT_KEY=" + key + "&AZURE_BLOB_ENDPOINT=http%3A%2F%2F127.0.0.1%3A10000%2Fdevstoreaccount1%2F",
			want:    Config{Container: "c-1", Root: "x", AccountName: "devstoreaccount1", AccountKey: key, Environment: EnvPublic, Endpoint: "http://127.0.0.1:10000/devstoreaccount1"},
			service: "http://127.0.0.1:10000/devstoreaccount1",
		},
		{uri: "s3://backups?AZURE_ACCOUNT_NAME=a&AZURE_ACCOUNT_KEY=" + key, err: "scheme"},
		{uri: "azure-blob:///p?AZURE_ACCOUNT_NAME=a&AZURE_ACCOUNT_KEY=" + key, err: "no container"},
		{uri: "azure-blob://Bad_Name?AZURE_ACCOUNT_NAME=a&AZURE_ACCOUNT_KEY=" + key, err: "container name"},
		{uri: "azure-blob://ab?AZURE_ACCOUNT_NAME=a&AZURE_ACCOUNT_KEY=" + key, err: "3 to 63"},
		{uri: "azure-blob://a--b?AZURE_ACCOUNT_NAME=a&AZURE_ACCOUNT_KEY=" + key, err: "container name"},
		{uri: "azure-blob://c1c/a/../b?AZURE_ACCOUNT_NAME=a&AZURE_ACCOUNT_KEY=" + key, err: "path"},
		{uri: "azure-blob://c1c/a//b?AZURE_ACCOUNT_NAME=a&AZURE_ACCOUNT_KEY=" + key, err: "path"},
		{uri: "azure-blob://c1c?AZURE_ACCOUNT_KEY=" + key, err: "AZURE_ACCOUNT_NAME is required"},
		{uri: "azure-blob://c1c?AZURE_ACCOUNT_NAME=a", err: "no credentials"},
		{uri: "azure-blob://c1c?AZURE_ACCOUNT_NAME=a&AZURE_ACCOUNT_KEY=" + key + "&AZURE_CLIENT_SECRET=shh", err: "not both"},
		{uri: "azure-blob://c1c?AZURE_ACCOUNT_NAME=a&AZURE_CLIENT_ID=id&AZURE_CLIENT_SECRET=shh", err: "also needs AZURE_TENANT_ID"},
		{uri: "azure-blob://c1c?AZURE_ACCOUNT_NAME=a&AZURE_ACCOUNT_KEY=" + key + "&AZURE_ENVIRONMENT=Mars", err: "AZURE_ENVIRONMENT"},
		{uri: "azure-blob://c1c?AZURE_ACCOUNT_NAME=a&AZURE_ACCOUNT_KEY=" + key + "&AZURE_BLOB_ENDPOINT=ftp%3A%2F%2Fx", err: "AZURE_BLOB_ENDPOINT"},
		{uri: "azure-blob://c1c?AZURE_ACCOUNT_NAME=a&AZURE_ACCOUNT_KEY=" + key + "&BOGUS=1&AWS_REGION=x", err: "unknown parameters AWS_REGION, BOGUS"},
		{uri: "azure-blob://c1c?AZURE_ACCOUNT_NAME=a&AZURE_ACCOUNT_NAME=b&AZURE_ACCOUNT_KEY=" + key, err: "more than once"},
		{uri: "azure-blob://user:" + key + "@c1c?AZURE_ACCOUNT_NAME=a", err: "user info"},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			cfg, err := ParseURI(tc.uri)
			if tc.err != "" {
				if err == nil || !errors.Is(err, storage.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseURI = %v, want ErrInvalidArgument containing %q", err, tc.err)
				}
				for _, secret := range []string{key, "shh"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error shows a secret: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURI: %v", err)
			}
			got := cfg
			got.URI = ""
			if got != tc.want {
				t.Errorf("ParseURI = %+v\nwant %+v", got, tc.want)
			}
			if s := cfg.ServiceURL(); s != tc.service {
				t.Errorf("ServiceURL = %q, want %q", s, tc.service)
			}
			for _, shown := range []string{cfg.String(), fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg.URI), fmt.Sprintf("%#v", cfg)} {
				for _, secret := range []string{key, "shh"} {
					if strings.Contains(shown, secret) {
						t.Errorf("config prints a secret: %s", shown)
					}
				}
			}
		})
	}
}

func TestValidListPrefix(t *testing.T) {
	t.Parallel()
	for prefix, want := range map[string]bool{
		"": true, "a": true, "a/": true, "a/b": true, ".": true, "..": true, "a.": true,
		"../": false, "/": false, "./": false, "a//": false, "../../": false, "a/./b": false,
	} {
		if got := validListPrefix(prefix); got != want {
			t.Errorf("validListPrefix(%q) = %v, want %v", prefix, got, want)
		}
	}
}
