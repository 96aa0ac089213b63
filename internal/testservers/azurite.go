package testservers

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// Azurite's well-known development account.
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azurite is a running Azurite blob service.
type Azurite struct {
	// Endpoint is the service URL, http://127.0.0.1:PORT/devstoreaccount1.
	Endpoint string
	Account  string
	Key      string
	// Container was created by StartAzurite for the test.
	Container string
	Process   *Process

	seq *atomic.Int64
}

// StartAzurite starts azurite-blob on a free port of 127.0.0.1 with its
// data in a temporary directory, waits until it answers, creates a
// container for the test, and stops the server when the test ends.
func StartAzurite(t testing.TB) Azurite {
	t.Helper()
	bin := Require(t, "azurite-blob")
	port := FreePort(t)
	p := StartProcess(t, bin, nil,
		"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port),
		"--location", t.TempDir(),
		"--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry")
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := WaitTCP(ctx, addr, time.Minute); err != nil {
		t.Fatalf("starting azurite: %v\n%s", err, p.Output())
	}
	a := Azurite{
		Endpoint: "http://" + addr + "/" + AzuriteAccount,
		Account:  AzuriteAccount,
		Key:      AzuriteKey,
		Process:  p,
		seq:      new(atomic.Int64),
	}
	a.Container = a.NewContainer(t)
	return a
}

// NewContainer creates a fresh, empty container and returns its name.
func (a Azurite) NewContainer(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("cairn-test-%d", a.seq.Add(1))
	cred, err := container.NewSharedKeyCredential(a.Account, a.Key)
	if err != nil {
		t.Fatalf("creating azurite credential: %v", err)
	}
	cc, err := container.NewClientWithSharedKeyCredential(a.Endpoint+"/"+name, cred, nil)
	if err != nil {
		t.Fatalf("creating azurite container client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cc.Create(ctx, nil); err != nil {
		t.Fatalf("creating azurite container %s: %v\n%s", name, err, a.Process.Output())
	}
	return name
}

// URI returns an azure-blob:// URI for path (container/root) on this
// server with the account's shared key.
func (a Azurite) URI(path string) string {
	return "azure-blob://" + path + "?AZURE_ACCOUNT_NAME=" + a.Account +
		"&AZURE_ACCOUNT_KEY=" + url.QueryEscape(a.Key) + "&AZURE_BLOB_ENDPOINT=" + url.QueryEscape(a.Endpoint)
}
