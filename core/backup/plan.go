package backup

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/manifest/manifestpb"
	"github.com/cairnbackup/cairn/core/spans"
	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/locality/rules"
)

// piece is one span of a job cut at range boundaries, with its range.
type piece struct {
	index int
	span  spans.Span
	rd    cluster.RangeDesc
}

// liveNodes returns the live nodes with their localities, by id.
func liveNodes(ctx context.Context, meta *cluster.Meta) ([]locality.Node, error) {
	all, err := meta.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	live, err := meta.LiveNodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []locality.Node
	for _, n := range all {
		if !live[n.ID] {
			continue
		}
		loc, err := locality.Parse(n.Locality)
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", n.ID, err)
		}
		out = append(out, locality.Node{ID: n.ID, Locality: loc})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// policy is the execution policy the coordinator plans with: the one
// given to the environment (a plugin's, when installed), else the default
// rules in-process.
func (env *Env) policy() locality.Policy {
	if env.Policy != nil {
		return env.Policy
	}
	return rules.Default{}
}

// planPieces asks the execution policy which node exports each piece and
// from which replica, and groups the answer by node.
func planPieces(ctx context.Context, env *Env, filter locality.Locality, pieces []piece) ([]Assignment, error) {
	nodes, err := liveNodes(ctx, env.Node.Meta)
	if err != nil {
		return nil, jobs.MarkRetryable(fmt.Errorf("listing live nodes: %w", err))
	}
	req := locality.PlanRequest{Filter: filter, Nodes: nodes}
	for i, p := range pieces {
		req.Spans = append(req.Spans, locality.SpanRange{Index: i, Replicas: p.rd.Replicas, Leaseholder: p.rd.Leaseholder})
	}

	pol := env.policy()
	as, err := pol.Plan(ctx, req)
	if err != nil {
		err = fmt.Errorf("planning with the %s execution policy: %w", pol.Name(), err)
		// A policy that refuses the request is final; a plugin that could
		// not answer (crashed, restarting) is worth another try.
		if errors.Is(err, locality.ErrInvalid) || errors.Is(err, locality.ErrUnimplemented) {
			return nil, jobs.MarkPermanent(err)
		}
		return nil, jobs.MarkRetryable(err)
	}
	if len(as) != len(pieces) {
		return nil, jobs.MarkPermanent(fmt.Errorf("planning with the %s execution policy: %d assignments for %d spans", pol.Name(), len(as), len(pieces)))
	}
	live := map[int32]bool{}
	for _, n := range nodes {
		live[n.ID] = true
	}
	byNode := map[int32][]PlannedSpan{}
	for i, a := range as {
		if a.Index != i {
			return nil, jobs.MarkPermanent(fmt.Errorf("planning with the %s execution policy: assignment %d is for span %d", pol.Name(), i, a.Index))
		}
		if !live[a.Executor] || !containsNode(pieces[i].rd.Replicas, a.ReadFrom) {
			return nil, jobs.MarkPermanent(fmt.Errorf("planning with the %s execution policy: span %d assigned to node %d reading node %d, which is not a live node reading a replica", pol.Name(), i, a.Executor, a.ReadFrom))
		}
		byNode[a.Executor] = append(byNode[a.Executor], PlannedSpan{Index: pieces[i].index, Span: pieces[i].span, ReadFrom: a.ReadFrom})
	}
	var plan []Assignment
	for n, ss := range byNode {
		plan = append(plan, Assignment{Node: n, Spans: ss})
	}
	sort.Slice(plan, func(i, j int) bool { return plan[i].Node < plan[j].Node })
	return plan, nil
}

func containsNode(ids []int32, id int32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// replanDead moves the unfinished spans of prog's plan whose executing
// node or read replica is no longer live onto live nodes, asking the
// execution policy again for just those spans. It reports whether the
// plan changed; the caller persists it.
func replanDead(ctx context.Context, env *Env, prog *Progress, done map[int][]*manifestpb.File) (bool, error) {
	live, err := env.Node.Meta.LiveNodes(ctx)
	if err != nil {
		return false, jobs.MarkRetryable(err)
	}
	var moved []piece
	var keep []Assignment
	for _, a := range prog.Plan {
		var stay []PlannedSpan
		for _, ps := range a.Spans {
			if _, ok := done[ps.Index]; ok || (live[a.Node] && live[ps.ReadFrom]) {
				stay = append(stay, ps)
				continue
			}
			rds, err := env.Node.Ranges(ctx, ps.Span)
			if err != nil || len(rds) != 1 {
				return false, jobs.MarkRetryable(fmt.Errorf("finding the range of span %d: %v", ps.Index, err))
			}
			moved = append(moved, piece{index: ps.Index, span: ps.Span, rd: rds[0]})
		}
		if len(stay) > 0 {
			keep = append(keep, Assignment{Node: a.Node, Spans: stay})
		}
	}
	if len(moved) == 0 {
		return false, nil
	}
	extra, err := planPieces(ctx, env, locality.Locality{}, moved)
	if err != nil {
		return false, err
	}
	byNode := map[int32]int{}
	for i, a := range keep {
		byNode[a.Node] = i
	}
	for _, a := range extra {
		if i, ok := byNode[a.Node]; ok {
			keep[i].Spans = append(keep[i].Spans, a.Spans...)
			continue
		}
		byNode[a.Node] = len(keep)
		keep = append(keep, a)
	}
	sort.Slice(keep, func(i, j int) bool { return keep[i].Node < keep[j].Node })
	env.Logger.Info("re-planned spans of dead nodes", "spans", len(moved))
	prog.Plan = keep
	return true, nil
}
