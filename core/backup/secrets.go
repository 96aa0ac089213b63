package backup

import (
	"context"
	"fmt"

	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/redact"
)

// SecretURI returns the URI a job runs against: uri itself, or, when the
// job's record holds only its redacted form, the real one stored as the
// job secret id.
func (env *Env) SecretURI(ctx context.Context, uri, id string) (string, error) {
	if id == "" {
		return uri, nil
	}
	real, err := env.Node.Meta.Secret(ctx, id)
	if err != nil {
		return "", jobs.MarkRetryable(fmt.Errorf("reading the credentials of %s: %w", uri, err))
	}
	return real, nil
}

// StashURI prepares a URI for a job record: a URI without secrets is kept
// as is; one with secrets is stored as a job secret and replaced by its
// redacted form and the secret's id.
func (env *Env) StashURI(ctx context.Context, uri string) (recorded, secretID string, err error) {
	red := redact.URI(uri)
	if red == uri {
		return uri, "", nil
	}
	id, err := env.Node.Meta.PutSecret(ctx, uri)
	if err != nil {
		return "", "", err
	}
	return red, id, nil
}
