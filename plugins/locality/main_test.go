package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/locality/localityrpc"
	"github.com/cairnbackup/cairn/sdk/locality/localitytest"
	"github.com/cairnbackup/cairn/sdk/plugin"
)

// bin is this plugin, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "cairn-locality-plugin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "making a temporary directory:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "cairn-locality")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the plugin:", err)
		return 1
	}
	return m.Run()
}

// launch starts the plugin binary the way a host does and dispenses both
// kinds.
func launch(t *testing.T) (locality.Matcher, localityrpc.Policies) {
	t.Helper()
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: plugin.Handshake,
		VersionedPlugins: map[int]goplugin.PluginSet{plugin.ProtocolVersion: {
			localityrpc.MatcherName: localityrpc.NewMatcherPlugin(nil),
			localityrpc.PolicyName:  localityrpc.NewPolicyPlugin(nil),
		}},
		Cmd:              exec.Command(bin),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("starting the plugin: %v", err)
	}
	raw, err := rpc.Dispense(localityrpc.MatcherName)
	if err != nil {
		t.Fatalf("dispensing %s: %v", localityrpc.MatcherName, err)
	}
	m, err := localityrpc.MatcherFromDispensed(raw)
	if err != nil {
		t.Fatal(err)
	}
	raw, err = rpc.Dispense(localityrpc.PolicyName)
	if err != nil {
		t.Fatalf("dispensing %s: %v", localityrpc.PolicyName, err)
	}
	ps, err := localityrpc.PoliciesFromDispensed(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m, ps
}

// TestConformance runs the kit against the real binary over go-plugin.
func TestConformance(t *testing.T) {
	m, ps := launch(t)
	names, err := ps.Names(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"default", "strict"}; !slices.Equal(names, want) {
		t.Fatalf("the plugin serves policies %q, want %q", names, want)
	}
	cfg := localitytest.Config{Matcher: m, Policies: map[string]locality.Policy{}}
	for _, n := range names {
		p, ok := ps.Policy(n)
		if !ok {
			t.Fatalf("Policy(%q) of a listed name: not found", n)
		}
		cfg.Policies[n] = p
	}
	localitytest.Run(t, cfg)
}
