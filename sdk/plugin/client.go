package plugin

import (
	"log/slog"
	"os/exec"
	"path/filepath"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/cairnbackup/cairn/sdk/locality/localityrpc"
	"github.com/cairnbackup/cairn/sdk/storage/storagerpc"
)

// ClientConfig is how a host starts the plugin binary at path: the fixed
// handshake, gRPC only, AutoMTLS, every kind this SDK knows at every
// protocol version, and go-plugin's logging (the plugin's stderr
// included) bridged to logger with the attribute plugin=<file name>.
// The caller owns the client made from it and must Kill it.
func ClientConfig(path string, logger *slog.Logger) *goplugin.ClientConfig {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &goplugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: ClientPlugins(),
		Cmd:              exec.Command(path),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           NewHCLogger(logger.With("plugin", filepath.Base(path))),
		GRPCDialOptions:  transportTuning.dial(),
	}
}

// ClientPlugins is the host side of every kind, by protocol version.
// Dispense(KindStorage) returns a *storagerpc.Client.
func ClientPlugins() map[int]goplugin.PluginSet {
	set := goplugin.PluginSet{
		describeName: &describePlugin{},
		KindStorage:  &storagerpc.Plugin{},
	}
	if p, ok := tryPlugin(func() goplugin.Plugin { return localityrpc.NewMatcherPlugin(nil) }); ok {
		set[localityrpc.MatcherName] = p
	}
	if p, ok := tryPlugin(func() goplugin.Plugin { return localityrpc.NewPolicyPlugin(nil) }); ok {
		set[localityrpc.PolicyName] = p
	}
	return map[int]goplugin.PluginSet{ProtocolVersion: set}
}

// tryPlugin builds a client-side plugin, leaving the kind out if its
// package cannot yet make one (it panics while it is being written).
func tryPlugin(mk func() goplugin.Plugin) (p goplugin.Plugin, ok bool) {
	defer func() {
		if recover() != nil {
			p, ok = nil, false
		}
	}()
	p = mk()
	return p, p != nil
}
