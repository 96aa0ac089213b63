package s3store

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cairnbackup/cairn/core/redact"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// URI query parameters, spelled as CockroachDB spells them.
const (
	paramAuth         = "AUTH"
	paramAccessKeyID  = "AWS_ACCESS_KEY_ID"
	paramSecretKey    = "AWS_SECRET_ACCESS_KEY"
	paramSessionToken = "AWS_SESSION_TOKEN"
	paramRegion       = "AWS_REGION"
	paramEndpoint     = "AWS_ENDPOINT"
	paramPathStyle    = "AWS_USE_PATH_STYLE"
	paramStorageClass = "S3_STORAGE_CLASS"
	paramSSEMode      = "AWS_SERVER_ENC_MODE"
	paramKMSKeyID     = "AWS_SERVER_KMS_ID"
	paramLocality     = "COCKROACH_LOCALITY"
)

var knownParams = []string{
	paramAuth, paramAccessKeyID, paramSecretKey, paramSessionToken, paramRegion,
	paramEndpoint, paramPathStyle, paramStorageClass, paramSSEMode, paramKMSKeyID,
	paramLocality,
}

// Auth modes.
const (
	// AuthSpecified takes the keys from the URI.
	AuthSpecified = "specified"
	// AuthImplicit uses the SDK's default credential chain (environment,
	// shared files, web identity, container and instance roles).
	AuthImplicit = "implicit"
)

// DefaultRegion is used when the URI names none.
const DefaultRegion = "us-east-1"

// Config is a parsed s3:// URI. Its String method redacts the secrets;
// never print the fields one by one.
type Config struct {
	Bucket string
	// Prefix is the store's root inside the bucket, without leading or
	// trailing slash; empty for the bucket's root.
	Prefix string

	Auth            string
	AccessKeyID     string
	SecretAccessKey string // secret
	SessionToken    string // secret

	Region string
	// Endpoint is a custom endpoint URL (MinIO, another S3-compatible
	// service); empty for AWS.
	Endpoint  string
	PathStyle bool

	StorageClass types.StorageClass
	SSEMode      types.ServerSideEncryption
	KMSKeyID     string

	uri redact.URIString
}

// String returns the URI the config was parsed from, redacted.
func (c Config) String() string { return c.uri.String() }

// GoString keeps %#v from printing the secret fields.
func (c Config) GoString() string { return "s3store.Config(" + c.uri.String() + ")" }

// secrets are the values that must never appear in an error or a log line.
func (c Config) secrets() []string {
	var out []string
	for _, s := range []string{c.SecretAccessKey, c.SessionToken} {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ParseURI parses and validates an s3:// URI. Every error wraps
// storage.ErrInvalidArgument and names parameters, never their values.
func ParseURI(uri string) (Config, error) {
	shown := redact.URIString(uri)
	// Errors show the URI without its query: an unknown or misspelt
	// parameter may hold a secret that redaction does not recognise.
	where := "an s3 URI"
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("parsing %s: %s: %w", where, fmt.Sprintf(format, args...), storage.ErrInvalidArgument)
	}
	u, err := url.Parse(uri)
	if err != nil {
		// url's error quotes the whole URI, secrets included.
		return Config{}, invalid("not a valid URI")
	}
	where = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	if !strings.EqualFold(u.Scheme, "s3") {
		return Config{}, invalid("scheme %q is not s3", u.Scheme)
	}
	if u.User != nil {
		return Config{}, invalid("credentials go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, not in the host")
	}
	c := Config{Bucket: u.Host, uri: shown}
	if c.Bucket == "" {
		return Config{}, invalid("no bucket")
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if !validName(p) {
			return Config{}, invalid("path %q is not a valid prefix (empty, \".\" or \"..\" elements)", p)
		}
		c.Prefix = p
	}

	q, err := storage.ParseParams(u.RawQuery, knownParams...)
	if err != nil {
		return Config{}, invalid("%v", err)
	}

	c.AccessKeyID = q.Get(paramAccessKeyID)
	c.SecretAccessKey = q.Get(paramSecretKey)
	c.SessionToken = q.Get(paramSessionToken)
	c.Region = q.Get(paramRegion)
	if c.Region == "" {
		c.Region = DefaultRegion
	}

	c.Auth = strings.ToLower(q.Get(paramAuth))
	switch c.Auth {
	case "":
		if c.AccessKeyID == "" && c.SecretAccessKey == "" {
			return Config{}, invalid("no credentials: give AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AUTH=implicit")
		}
		c.Auth = AuthSpecified
	case AuthSpecified, AuthImplicit:
	default:
		return Config{}, invalid("AUTH must be %s or %s", AuthSpecified, AuthImplicit)
	}
	switch c.Auth {
	case AuthSpecified:
		if c.AccessKeyID == "" || c.SecretAccessKey == "" {
			return Config{}, invalid("AUTH=specified needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		}
	case AuthImplicit:
		if c.AccessKeyID != "" || c.SecretAccessKey != "" || c.SessionToken != "" {
			return Config{}, invalid("AUTH=implicit takes no AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN")
		}
	}

	if e := q.Get(paramEndpoint); e != "" {
		eu, err := url.Parse(e)
		if err != nil || (eu.Scheme != "http" && eu.Scheme != "https") || eu.Host == "" || eu.User != nil {
			return Config{}, invalid("AWS_ENDPOINT must be an http:// or https:// URL with a host")
		}
		c.Endpoint = e
		c.PathStyle = true
	}
	if v := q.Get(paramPathStyle); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, invalid("AWS_USE_PATH_STYLE must be true or false")
		}
		c.PathStyle = b
	}

	if v := q.Get(paramStorageClass); v != "" {
		sc := types.StorageClass(v)
		if !slices.Contains(sc.Values(), sc) {
			return Config{}, invalid("S3_STORAGE_CLASS %q is not one of %v", v, sc.Values())
		}
		c.StorageClass = sc
	}
	switch v := q.Get(paramSSEMode); v {
	case "":
	case string(types.ServerSideEncryptionAes256), string(types.ServerSideEncryptionAwsKms):
		c.SSEMode = types.ServerSideEncryption(v)
	default:
		return Config{}, invalid("AWS_SERVER_ENC_MODE must be AES256 or aws:kms")
	}
	c.KMSKeyID = q.Get(paramKMSKeyID)
	switch {
	case c.SSEMode == types.ServerSideEncryptionAwsKms && c.KMSKeyID == "":
		return Config{}, invalid("AWS_SERVER_ENC_MODE=aws:kms needs AWS_SERVER_KMS_ID")
	case c.SSEMode != types.ServerSideEncryptionAwsKms && c.KMSKeyID != "":
		return Config{}, invalid("AWS_SERVER_KMS_ID needs AWS_SERVER_ENC_MODE=aws:kms")
	}
	return c, nil
}

// validName reports whether name follows the naming rules of package
// storage.
func validName(name string) bool { return storage.ValidateName(name) == nil }

// possiblePrefix reports whether some valid name can start with prefix:
// every element but the last must be a valid element.
func possiblePrefix(prefix string) bool {
	elems := strings.Split(prefix, "/")
	for _, elem := range elems[:len(elems)-1] {
		if elem == "" || elem == "." || elem == ".." {
			return false
		}
	}
	return true
}
