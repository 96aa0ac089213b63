package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairnbackup/cairn/core/server"
	"github.com/cairnbackup/cairn/core/workload/movr"
	"github.com/cairnbackup/cairn/internal/testservers"
)

var (
	cloudPluginsOnce sync.Once
	cloudPluginsDir  string
	cloudPluginsErr  error
)

// cloudPlugins builds the storage plugins once into a plugin directory.
func cloudPlugins(t testing.TB) string {
	t.Helper()
	dir, err := buildCloudPlugins()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func buildCloudPlugins() (string, error) {
	cloudPluginsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cairn-cli-plugins-")
		if err != nil {
			cloudPluginsErr = err
			return
		}
		cloudPluginsDir = dir
		for _, p := range []string{"storage-s3", "storage-azure", "storage-gcs"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(dir, p), "../../plugins/"+p).CombinedOutput()
			if err != nil {
				cloudPluginsErr = fmt.Errorf("building %s: %v\n%s", p, err, out)
				return
			}
		}
	})
	return cloudPluginsDir, cloudPluginsErr
}

// cloudRoundTrip backs movr up to uri through the CLI with the plugins
// installed, lists it, restores it, compares fingerprints at the backup's
// end time, and returns everything the CLI printed (stdout and the
// --verbose logs) for secret scanning.
func cloudRoundTrip(t *testing.T, uri string) (dataDir, printed string) {
	t.Helper()
	plugins := cloudPlugins(t)
	dir := t.TempDir()
	var all strings.Builder
	mustRun := func(args ...string) string {
		t.Helper()
		args = append(args, "--plugin-dir", plugins, "--verbose")
		out, errOut, code := cairn(t, dir, args...)
		all.WriteString(out)
		all.WriteString(errOut)
		if code != 0 {
			t.Fatalf("cairn %s: exit=%d\n%s", redactedArgs(args), code, errOut)
		}
		return out
	}
	mustRun("workload", "init", "movr", "--rows", "400", "--seed", "5")
	mustRun("sql", "-e", fmt.Sprintf("BACKUP DATABASE movr INTO '%s'", uri))

	var list []map[string]string
	if err := json.Unmarshal([]byte(mustRun("backups", uri, "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("SHOW BACKUPS IN %s: %v, want one backup", redactedArgs([]string{uri}), list)
	}
	var show []map[string]string
	if err := json.Unmarshal([]byte(mustRun("backups", "show", uri, "--format", "json", "--check-files")), &show); err != nil {
		t.Fatal(err)
	}
	endTS := show[0]["end_ts"]
	mustRun("sql", "-e", fmt.Sprintf("RESTORE DATABASE movr FROM LATEST IN '%s' WITH new_db_name = 'm2'", uri))
	src := fingerprintLine(t, mustRun("fingerprint", "--database", "movr", "--as-of", endTS))
	dst := fingerprintLine(t, mustRun("fingerprint", "--database", "m2"))
	if src != dst {
		t.Fatalf("fingerprint of movr at %s = %s, of the restore = %s", endTS, src, dst)
	}
	all.WriteString(mustRun("jobs", "list", "--format", "json"))
	all.WriteString(mustRun("jobs", "list"))
	return dir, all.String()
}

func fingerprintLine(t *testing.T, out string) string {
	t.Helper()
	_, sum, ok := strings.Cut(strings.TrimSpace(out), ": ")
	if !ok {
		t.Fatalf("fingerprint output %q", out)
	}
	return sum
}

func redactedArgs(args []string) string {
	s := strings.Join(args, " ")
	if i := strings.Index(s, "?"); i >= 0 {
		return s[:i] + "?<params>"
	}
	return s
}

// assertNoSecrets fails when any secret appears in what the CLI printed
// or in any key of the cluster's control plane (job records included).
func assertNoSecrets(t *testing.T, dataDir, printed string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		for _, form := range []string{sec, url.QueryEscape(sec)} {
			if strings.Contains(printed, form) {
				t.Errorf("a secret appears in the CLI's output or logs")
			}
		}
	}
	srv, err := server.StartLocal(context.Background(), server.Config{Dir: dataDir, Nodes: 3, RegionOf: movr.RegionOfKey})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	resp, err := srv.Cluster.Etcd.Client.Get(context.Background(), "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		t.Fatal("the control plane is empty; the scan proves nothing")
	}
	jobsSeen := 0
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Key), "/jobs/records/") {
			jobsSeen++
		}
		for _, sec := range secrets {
			if strings.Contains(string(kv.Value), sec) || strings.Contains(string(kv.Value), url.QueryEscape(sec)) {
				t.Errorf("etcd key %s holds a secret", kv.Key)
			}
		}
	}
	if jobsSeen < 2 {
		t.Fatalf("found %d job records, want the backup's and the restore's", jobsSeen)
	}
}

func TestS3EndToEnd(t *testing.T) {
	m := testservers.StartMinIO(t)
	uri := m.URI(m.Bucket, "backups", "")
	dir, printed := cloudRoundTrip(t, uri)
	assertNoSecrets(t, dir, printed, m.SecretKey)
}

func TestAzureEndToEnd(t *testing.T) {
	a := testservers.StartAzurite(t)
	uri := a.URI(a.Container + "/backups")
	dir, printed := cloudRoundTrip(t, uri)
	assertNoSecrets(t, dir, printed, a.Key)
}

func TestGCSEndToEnd(t *testing.T) {
	g := testservers.StartFakeGCS(t)
	uri := fmt.Sprintf("gs://%s/backups?GCS_ENDPOINT=%s", g.Bucket, url.QueryEscape(g.Endpoint))
	cloudRoundTrip(t, uri)
}

// TestS3BackupThroughFaults runs the whole backup and restore through a
// proxy that fails a fifth of the requests to MinIO (5xx, resets, slow
// replies): retries carry it, and the restore is identical.
func TestS3BackupThroughFaults(t *testing.T) {
	m := testservers.StartMinIO(t)
	p := testservers.StartFaultProxy(t, m.Endpoint, testservers.FaultConfig{Seed: 11, Rate: 0.2})
	uri := fmt.Sprintf("s3://%s/faulty?AWS_ACCESS_KEY_ID=%s&AWS_SECRET_ACCESS_KEY=%s&AWS_ENDPOINT=%s&AWS_REGION=%s",
		m.Bucket, m.AccessKey, m.SecretKey, url.QueryEscape(p.URL), m.Region)
	cloudRoundTrip(t, uri)
	if p.Injected() == 0 {
		t.Fatalf("the proxy injected no fault: %s", p.Summary())
	}
	t.Logf("faults: %s", p.Summary())
}
