package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/cairnbackup/cairn/core/jobs"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// backupSpec is a job's payload; backupProgress what it persists to resume.
type backupSpec struct {
	Destination string `json:"destination"`
}

type backupProgress struct {
	SpansDone int `json:"spans_done"`
}

type backupResumer struct {
	spec backupSpec
}

func (b *backupResumer) Resume(ctx context.Context, job *jobs.Job) error {
	// Continue from what an earlier run (maybe on another node) persisted.
	var p backupProgress
	if raw := job.Record().Progress; raw != nil {
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("decoding progress: %w", err)
		}
	}
	const spans = 10
	for ; p.SpansDone < spans; p.SpansDone++ {
		if err := ctx.Err(); err != nil {
			return err // paused, canceled or node stopping
		}
		// ... export one span; a transient storage error would be
		// returned as jobs.MarkRetryable(err).
		if err := job.SetProgress(ctx, float64(p.SpansDone+1)/spans, p); err != nil {
			return err
		}
	}
	return job.SetResult(ctx, map[string]int{"rows": 1000})
}

func (b *backupResumer) OnFailOrCancel(ctx context.Context, job *jobs.Job, cause error) error {
	// ... delete the partial backup at b.spec.Destination; must be
	// idempotent.
	return nil
}

// A node registers the job types it runs and starts adopting; any node (or
// a client without a session) creates jobs and waits for them.
func Example() {
	ctx := context.Background()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://127.0.0.1:2379"}})
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		panic(err)
	}
	defer sess.Close()

	reg := jobs.NewRegistry(cli, jobs.Options{NodeID: 1, Session: sess, Prefix: "/cairn/", Logger: slog.Default()})
	reg.Register("BACKUP", func(rec jobs.Record) (jobs.Resumer, error) {
		var spec backupSpec
		if err := json.Unmarshal(rec.Payload, &spec); err != nil {
			return nil, fmt.Errorf("decoding backup spec: %w", err)
		}
		return &backupResumer{spec: spec}, nil
	})
	reg.Start(ctx)
	defer reg.Stop()

	payload, _ := json.Marshal(backupSpec{Destination: "s3://bucket/backups"})
	id, err := reg.Create(ctx, jobs.Record{Type: "BACKUP", Description: "BACKUP INTO 's3://bucket/backups?AWS_SECRET_ACCESS_KEY=redacted'", User: "root", Payload: payload})
	if err != nil {
		panic(err)
	}
	rec, err := reg.Wait(ctx, id)
	if err != nil {
		panic(err)
	}
	fmt.Println(rec.ID, rec.State, rec.Fraction, string(rec.Result))
}
