package azurestore

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/cairnbackup/cairn/core/redact"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// URI query parameters understood by the store.
const (
	ParamAccountName  = "AZURE_ACCOUNT_NAME"
	ParamAccountKey   = "AZURE_ACCOUNT_KEY"
	ParamEnvironment  = "AZURE_ENVIRONMENT"
	ParamClientID     = "AZURE_CLIENT_ID"
	ParamClientSecret = "AZURE_CLIENT_SECRET"
	ParamTenantID     = "AZURE_TENANT_ID"
	ParamBlobEndpoint = "AZURE_BLOB_ENDPOINT"
	// ParamLocality is cairn's locality tag; the store ignores it.
	ParamLocality = "COCKROACH_LOCALITY"
)

var knownParams = []string{
	ParamAccountName, ParamAccountKey, ParamEnvironment, ParamClientID,
	ParamClientSecret, ParamTenantID, ParamBlobEndpoint, ParamLocality,
}

// Cloud environments and the blob endpoint suffix of each.
const (
	EnvPublic       = "AzurePublicCloud"
	EnvUSGovernment = "AzureUSGovernmentCloud"
	EnvChina        = "AzureChinaCloud"
)

var blobSuffixes = map[string]string{
	EnvPublic:       "blob.core.windows.net",
	EnvUSGovernment: "blob.core.usgovcloudapi.net",
	EnvChina:        "blob.core.chinacloudapi.cn",
}

// Config is a parsed azure-blob:// or azure:// URI. Its String method
// never shows the secrets.
type Config struct {
	// URI is the URI the config was parsed from; it prints redacted.
	URI redact.URIString
	// Container is the URI's host; Root the path below it, without
	// leading or trailing slashes ("" for the container's root).
	Container, Root string
	AccountName     string
	// AccountKey (secret) selects shared key authentication.
	AccountKey string
	// Environment is one of EnvPublic, EnvUSGovernment, EnvChina.
	Environment string
	// ClientID, ClientSecret (secret) and TenantID select an Azure AD
	// client secret credential.
	ClientID, ClientSecret, TenantID string
	// Endpoint overrides the service URL, e.g. an emulator's
	// http://127.0.0.1:10000/devstoreaccount1. Empty means
	// https://<account>.<environment's blob suffix>.
	Endpoint string
}

// String shows the redacted URI.
func (c Config) String() string { return c.URI.String() }

// GoString keeps %#v from printing the fields, secrets included.
func (c Config) GoString() string { return "azurestore.Config(" + c.URI.GoString() + ")" }

// ServiceURL is the blob service URL of the account, without a trailing
// slash.
func (c Config) ServiceURL() string {
	if c.Endpoint != "" {
		return c.Endpoint
	}
	return "https://" + c.AccountName + "." + blobSuffixes[c.Environment]
}

// ContainerURL is the URL of the container.
func (c Config) ContainerURL() string {
	return c.ServiceURL() + "/" + url.PathEscape(c.Container)
}

// UsesSharedKey reports whether the config authenticates with the account
// key (otherwise with the client secret credential).
func (c Config) UsesSharedKey() bool { return c.AccountKey != "" }

// ParseURI parses and validates an azure-blob:// or azure:// URI. Errors
// wrap storage.ErrInvalidArgument and show the URI redacted.
func ParseURI(uri string) (Config, error) {
	cfg := Config{URI: redact.URIString(uri)}
	fail := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("parsing azure storage URI %s: %s: %w",
			cfg.URI, fmt.Sprintf(format, args...), storage.ErrInvalidArgument)
	}
	u, err := url.Parse(uri)
	if err != nil {
		return fail("not a URI")
	}
	switch strings.ToLower(u.Scheme) {
	case "azure", "azure-blob":
	default:
		return fail("scheme %q is not azure-blob or azure", u.Scheme)
	}
	if u.Opaque != "" {
		return fail("want azure-blob://container/path")
	}
	if u.User != nil {
		return fail("credentials in the URI's user info are not supported; use %s", ParamAccountKey)
	}
	if u.Fragment != "" {
		return fail("a fragment is not allowed")
	}
	if u.Port() != "" {
		return fail("the container name %q holds a port", u.Host)
	}
	cfg.Container = u.Host
	if err := checkContainerName(cfg.Container); err != nil {
		return fail("%v", err)
	}
	cfg.Root = strings.Trim(u.Path, "/")
	if cfg.Root != "" && !validName(cfg.Root) {
		return fail("path %q has empty, \".\" or \"..\" elements", u.Path)
	}

	q, err := storage.ParseParams(u.RawQuery, knownParams...)
	if err != nil {
		return fail("%v", err)
	}
	cfg.AccountName = q.Get(ParamAccountName)
	cfg.AccountKey = q.Get(ParamAccountKey)
	cfg.Environment = q.Get(ParamEnvironment)
	cfg.ClientID = q.Get(ParamClientID)
	cfg.ClientSecret = q.Get(ParamClientSecret)
	cfg.TenantID = q.Get(ParamTenantID)
	cfg.Endpoint = q.Get(ParamBlobEndpoint)

	if cfg.AccountName == "" {
		return fail("%s is required", ParamAccountName)
	}
	if cfg.Environment == "" {
		cfg.Environment = EnvPublic
	}
	env, ok := canonicalEnv(cfg.Environment)
	if !ok {
		return fail("%s %q is not one of %s, %s, %s", ParamEnvironment, cfg.Environment, EnvPublic, EnvUSGovernment, EnvChina)
	}
	cfg.Environment = env

	var clientParams, missing []string
	for _, p := range []struct{ name, val string }{
		{ParamClientID, cfg.ClientID}, {ParamClientSecret, cfg.ClientSecret}, {ParamTenantID, cfg.TenantID},
	} {
		if p.val != "" {
			clientParams = append(clientParams, p.name)
		} else {
			missing = append(missing, p.name)
		}
	}
	switch {
	case cfg.AccountKey != "" && len(clientParams) > 0:
		return fail("give either %s or %s, not both (%s given)", ParamAccountKey,
			strings.Join([]string{ParamClientID, ParamClientSecret, ParamTenantID}, ", "), strings.Join(clientParams, ", "))
	case cfg.AccountKey == "" && len(clientParams) == 0:
		return fail("no credentials: give %s, or %s, %s and %s", ParamAccountKey, ParamClientID, ParamClientSecret, ParamTenantID)
	case cfg.AccountKey == "" && len(missing) > 0:
		return fail("a client secret credential also needs %s", strings.Join(missing, ", "))
	}

	if cfg.Endpoint != "" {
		e, err := url.Parse(cfg.Endpoint)
		if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
			return fail("%s %q is not an http(s) URL", ParamBlobEndpoint, cfg.Endpoint)
		}
		if e.User != nil || e.RawQuery != "" || e.Fragment != "" {
			return fail("%s must have no user info, query or fragment", ParamBlobEndpoint)
		}
		cfg.Endpoint = strings.TrimRight(cfg.Endpoint, "/")
	}
	return cfg, nil
}

func canonicalEnv(s string) (string, bool) {
	for env := range blobSuffixes {
		if strings.EqualFold(env, s) {
			return env, true
		}
	}
	return "", false
}

// checkContainerName applies Azure's rules: 3 to 63 lower case letters,
// digits and single hyphens, starting and ending with a letter or digit;
// "$root" is the account's root container.
func checkContainerName(name string) error {
	if name == "" {
		return fmt.Errorf("no container: want azure-blob://container/path")
	}
	if name == "$root" {
		return nil
	}
	if len(name) < 3 || len(name) > 63 {
		return fmt.Errorf("container name %q must be 3 to 63 characters long", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(name)-1 && name[i-1] != '-':
		default:
			return fmt.Errorf("container name %q may hold only lower case letters, digits and single inner hyphens", name)
		}
	}
	return nil
}

// validName reports whether name follows the object naming rules of
// package storage.
func validName(name string) bool { return storage.ValidateName(name) == nil }

// validListPrefix reports whether some valid name can start with prefix:
// every element of it but the last (which may be partial) must be valid.
func validListPrefix(prefix string) bool {
	i := strings.LastIndexByte(prefix, '/')
	if i < 0 {
		return true
	}
	return validName(prefix[:i])
}
