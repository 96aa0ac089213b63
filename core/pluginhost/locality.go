package pluginhost

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/locality/localityrpc"
)

// localityKinds returns the locality matcher and policies of the current
// process, and its generation.
func (p *proc) localityKinds() (locality.Matcher, localityrpc.Policies, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.matcher, p.policies, p.gen
}

// callLocality runs op with the current process's locality kinds. When
// the plugin died under it, the plugin is restarted and op runs again
// (locality calls have no side effects), up to MaxRestarts times.
func (p *proc) callLocality(ctx context.Context, op func(locality.Matcher, localityrpc.Policies) error) error {
	for attempt := 0; ; attempt++ {
		if p.h.isClosed() {
			return errHostClosed
		}
		m, ps, gen := p.localityKinds()
		err := op(m, ps)
		if err == nil || attempt >= p.h.cfg.MaxRestarts || !p.localityDead(ctx, err) {
			return err
		}
		if rerr := p.restart(ctx, gen); rerr != nil {
			return fmt.Errorf("%w (and %v)", err, rerr)
		}
	}
}

// localityDead reports whether err, from a locality call made under ctx,
// means the plugin process is gone: the transport's Unavailable (a
// locality plugin's own errors are InvalidArgument or Unimplemented), or
// an exited process.
func (p *proc) localityDead(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable { // wrapped too
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.client != nil && p.client.Exited()
}

// hostMatcher is a plugin's matcher that survives its restarts.
type hostMatcher struct{ p *proc }

var _ locality.Matcher = hostMatcher{}

func (m hostMatcher) MatchNodes(ctx context.Context, filter locality.Locality, nodes []locality.Node) ([]int32, error) {
	var out []int32
	err := m.p.callLocality(ctx, func(lm locality.Matcher, _ localityrpc.Policies) error {
		if lm == nil {
			return fmt.Errorf("plugin %s lost its locality matcher after a restart: %w", m.p.path, locality.ErrUnimplemented)
		}
		var err error
		out, err = lm.MatchNodes(ctx, filter, nodes)
		return err
	})
	return out, err
}

func (m hostMatcher) Buckets(ctx context.Context, nodes []locality.Node, buckets []string, strict bool) (map[int32]string, error) {
	var out map[int32]string
	err := m.p.callLocality(ctx, func(lm locality.Matcher, _ localityrpc.Policies) error {
		if lm == nil {
			return fmt.Errorf("plugin %s lost its locality matcher after a restart: %w", m.p.path, locality.ErrUnimplemented)
		}
		var err error
		out, err = lm.Buckets(ctx, nodes, buckets, strict)
		return err
	})
	return out, err
}

// hostPolicy is a plugin's named policy that survives its restarts.
type hostPolicy struct {
	p    *proc
	name string
}

var _ locality.Policy = hostPolicy{}

func (hp hostPolicy) Name() string { return hp.name }

func (hp hostPolicy) Plan(ctx context.Context, req locality.PlanRequest) ([]locality.Assignment, error) {
	var out []locality.Assignment
	err := hp.p.callLocality(ctx, func(_ locality.Matcher, ps localityrpc.Policies) error {
		var pol locality.Policy
		ok := false
		if ps != nil {
			pol, ok = ps.Policy(hp.name)
		}
		if !ok {
			return fmt.Errorf("plugin %s no longer serves policy %q: %w", hp.p.path, hp.name, locality.ErrUnimplemented)
		}
		var err error
		out, err = pol.Plan(ctx, req)
		return err
	})
	return out, err
}
