package testservers

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MinIO is a MinIO server started by StartMinIO.
type MinIO struct {
	// Endpoint is the S3 API's URL, http://127.0.0.1:PORT.
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	Region               string
	// Bucket was created empty at start.
	Bucket  string
	Process *Process

	buckets atomic.Int64
}

// StartMinIO starts MinIO on a free port of 127.0.0.1 with its data in a
// t.TempDir(), waits until it is ready, creates Bucket, and stops it when
// the test ends.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin := Require(t, "minio")
	m := &MinIO{
		AccessKey: "cairn-minio-user",
		SecretKey: "cairn-minio-secret-4f9a1c7e",
		Region:    "us-east-1",
	}
	port, consolePort := FreePort(t), FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	m.Endpoint = "http://" + addr
	m.Process = StartProcess(t, bin, []string{
		"MINIO_ROOT_USER=" + m.AccessKey,
		"MINIO_ROOT_PASSWORD=" + m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"CI=", // MinIO reads CI=true as "run in CI mode"; keep it out.
	}, "server", "--quiet", "--address", addr, "--console-address", fmt.Sprintf("127.0.0.1:%d", consolePort), t.TempDir())

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := WaitTCP(ctx, addr, time.Minute); err != nil {
		t.Fatalf("starting minio: %v\n%s", err, m.Process.Output())
	}
	if err := waitHTTP200(ctx, m.Endpoint+"/minio/health/ready"); err != nil {
		t.Fatalf("starting minio: %v\n%s", err, m.Process.Output())
	}
	m.Bucket = m.CreateBucket(t)
	return m
}

// Client returns an S3 client with the root credentials, for setting up
// and inspecting what a test did behind the store's back.
func (m *MinIO) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       m.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
		BaseEndpoint: aws.String(m.Endpoint),
		UsePathStyle: true,
	})
}

// CreateBucket creates a new, empty bucket and returns its name.
func (m *MinIO) CreateBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("cairn-test-%d", m.buckets.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("creating bucket %s in minio: %v", name, err)
	}
	return name
}

// URI returns an s3:// URI for bucket/path with the root credentials and
// the endpoint, plus extra query parameters (already encoded, "&"-joined).
func (m *MinIO) URI(bucket, path, extra string) string {
	u := fmt.Sprintf("s3://%s/%s?AWS_ACCESS_KEY_ID=%s&AWS_SECRET_ACCESS_KEY=%s&AWS_ENDPOINT=%s&AWS_REGION=%s",
		bucket, path, m.AccessKey, m.SecretKey, m.Endpoint, m.Region)
	if extra != "" {
		u += "&" + extra
	}
	return u
}

func waitHTTP200(ctx context.Context, url string) error {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", url, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
