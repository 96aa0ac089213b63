package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const secretsPrefix = Prefix + "secrets/"

// PutSecret stores value under a new random id and returns the id. Job
// records hold such ids instead of credentials, so a job record, SHOW JOBS
// or a log line never carries a secret; the job's coordinator reads the
// value back when it runs.
func (m *Meta) PutSecret(ctx context.Context, value string) (string, error) {
	b := make([]byte, 16)
	rand.Read(b)
	id := hex.EncodeToString(b)
	if _, err := m.cli.Put(ctx, secretsPrefix+id, value); err != nil {
		return "", fmt.Errorf("storing a job secret: %w", err)
	}
	return id, nil
}

// Secret reads the value stored under id.
func (m *Meta) Secret(ctx context.Context, id string) (string, error) {
	resp, err := m.cli.Get(ctx, secretsPrefix+id)
	if err != nil {
		return "", fmt.Errorf("reading job secret %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("reading job secret %s: %w", id, ErrNotFound)
	}
	return string(resp.Kvs[0].Value), nil
}

// DeleteSecret removes a secret; removing a missing one is not an error.
func (m *Meta) DeleteSecret(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	_, err := m.cli.Delete(ctx, secretsPrefix+id, clientv3.WithPrefix())
	return err
}
