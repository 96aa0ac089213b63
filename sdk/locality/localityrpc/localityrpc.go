// Package localityrpc carries the locality plugin kinds over gRPC: the
// go-plugin plugins that serve a Matcher and a set of Policies, and the
// client shims the host uses to call them.
//
// STUB: the signatures are the contract between sdk/plugin (Serve), the
// host (core/pluginhost) and this package; the implementation is in
// progress.
package localityrpc

import (
	"context"
	"errors"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/cairnbackup/cairn/sdk/locality"
)

// Plugin names in go-plugin's plugin set.
const (
	MatcherName = "locality-matcher"
	PolicyName  = "execution-policy"
)

var errStub = errors.New("localityrpc: not implemented yet")

// NewMatcherPlugin serves m.
func NewMatcherPlugin(m locality.Matcher) goplugin.Plugin { panic(errStub) }

// NewPolicyPlugin serves the named policies ps.
func NewPolicyPlugin(ps []locality.Policy) goplugin.Plugin { panic(errStub) }

// Policies is the host's view of a plugin's policies.
type Policies interface {
	// Names lists the policies the plugin serves.
	Names(ctx context.Context) ([]string, error)
	// Policy returns the named policy, or false.
	Policy(name string) (locality.Policy, bool)
}

// MatcherFromDispensed converts what go-plugin's Dispense(MatcherName)
// returned into a Matcher.
func MatcherFromDispensed(raw any) (locality.Matcher, error) { return nil, errStub }

// PoliciesFromDispensed converts what Dispense(PolicyName) returned.
func PoliciesFromDispensed(raw any) (Policies, error) { return nil, errStub }
