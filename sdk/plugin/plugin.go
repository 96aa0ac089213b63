// Package plugin is what a cairn plugin's main calls, and what the host
// uses to talk to it. A plugin binary serves one or more kinds —
// storage, locality-matcher, execution-policy — over gRPC with
// hashicorp/go-plugin:
//
//	func main() {
//		plugin.Serve(plugin.ServeConfig{
//			Name: "storage-webdav", Version: "0.1.0",
//			Storage: webdav.Provider{},
//		})
//	}
//
// The handshake cookie is fixed, protocols are versioned
// (go-plugin's VersionedPlugins) from the first release, and AutoMTLS
// protects the connection.
package plugin

import (
	"log/slog"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// ProtocolVersion is the newest plugin protocol this SDK speaks.
const ProtocolVersion = 1

// Handshake is the fixed handshake of every cairn plugin. A binary run
// without it (by hand) explains that it is a plugin and exits.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "CAIRN_PLUGIN_COOKIE",
	MagicCookieValue: "6b1f0c1e-cairn-plugin-7d3a",
}

// Kinds of plugin.
const (
	KindStorage         = "storage"
	KindLocalityMatcher = "locality-matcher"
	KindExecutionPolicy = "execution-policy"
)

// CapabilityWriteFile is the storage capability of taking a write's bytes
// from a file the host names (the WriteFile call) rather than over the
// socket. Serve adds it: the SDK's server implements the call for every
// store, with the store's storage.FileWriter when it has one.
const CapabilityWriteFile = "write-file"

// CapabilityReadFile is the storage capability of putting a whole object
// into a file the host names (the ReadFile call) rather than streaming it
// over the socket; Serve adds it too (see storage.FileReader).
const CapabilityReadFile = "read-file"

// Info is what a plugin says about itself (the Describe call).
type Info struct {
	Name    string
	Version string
	// Kinds served by the binary.
	Kinds []string
	// Schemes of a storage plugin, e.g. "s3".
	Schemes []string
	// Capabilities of a storage plugin, e.g. "conditional-write".
	Capabilities []string
	// Policies of an execution-policy plugin, by name.
	Policies []string
	// Protocols are the protocol versions the binary serves.
	Protocols []int
}

// ServeConfig describes what a plugin binary serves. Set at least one of
// Storage, Matcher or Policies.
type ServeConfig struct {
	Name, Version string
	Storage       storage.Provider
	// Capabilities of the storage provider, reported by Describe.
	Capabilities []string
	Matcher      locality.Matcher
	Policies     []locality.Policy
	// Logger defaults to JSON on stderr, which the host re-logs under the
	// plugin's name.
	Logger *slog.Logger
}
