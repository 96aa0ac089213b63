package jobs

import (
	"errors"
	"fmt"
)

// State is where a job is in its life. The zero value is not a state.
type State string

// The states of a job. Terminal states are final: no transition leaves them.
const (
	StatePending         State = "pending"
	StateRunning         State = "running"
	StatePauseRequested  State = "pause-requested"
	StatePaused          State = "paused"
	StateCancelRequested State = "cancel-requested"
	StateReverting       State = "reverting"
	StateSucceeded       State = "succeeded"
	StateFailed          State = "failed"
	StateCanceled        State = "canceled"
	StateRevertFailed    State = "revert-failed"
)

// AllStates lists every state, in the order of a job's life.
var AllStates = []State{
	StatePending, StateRunning, StatePauseRequested, StatePaused,
	StateCancelRequested, StateReverting, StateSucceeded, StateFailed,
	StateCanceled, StateRevertFailed,
}

// transitions is the state machine: transitions[from] holds every state a
// record in state from may be written with. Writing a record without changing
// its state (progress, results, retries) is always allowed for non-terminal
// states and is not listed.
//
// Who makes each move:
//   - pending → running: the node that claimed the job, before Resume.
//   - pending/running → pause-requested, cancel-requested: Pause, Cancel.
//   - pending/running → paused: Pause of a job that no node has claimed.
//   - pending/running → failed: the claiming node cannot build a resumer.
//   - running/pause-requested → succeeded: Resume returned nil.
//   - running/pause-requested → reverting: Resume failed permanently.
//   - pause-requested → paused: the running node stopped the resumer.
//   - paused → running: Resume (the job becomes adoptable again).
//   - cancel-requested → reverting: the running (or adopting) node.
//   - reverting → canceled, failed, revert-failed: after OnFailOrCancel.
var transitions = map[State][]State{
	StatePending:         {StateRunning, StatePauseRequested, StatePaused, StateCancelRequested, StateFailed},
	StateRunning:         {StateSucceeded, StatePauseRequested, StatePaused, StateCancelRequested, StateReverting, StateFailed},
	StatePauseRequested:  {StatePaused, StateCancelRequested, StateSucceeded, StateReverting},
	StatePaused:          {StateRunning, StateCancelRequested},
	StateCancelRequested: {StateReverting},
	StateReverting:       {StateCanceled, StateFailed, StateRevertFailed},
	StateSucceeded:       nil,
	StateFailed:          nil,
	StateCanceled:        nil,
	StateRevertFailed:    nil,
}

// Valid reports whether s is one of the states above.
func (s State) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// Terminal reports whether s is final: succeeded, failed, canceled or
// revert-failed.
func (s State) Terminal() bool {
	switch s {
	case StateSucceeded, StateFailed, StateCanceled, StateRevertFailed:
		return true
	}
	return false
}

// Adoptable reports whether a job in state s needs a node to run it, so that
// a node without a claim on it may claim it.
func (s State) Adoptable() bool {
	switch s {
	case StatePending, StateRunning, StatePauseRequested, StateCancelRequested, StateReverting:
		return true
	}
	return false
}

// CanTransition reports whether a record in state from may be written in
// state to. A write that keeps a non-terminal state is always allowed.
func CanTransition(from, to State) bool {
	if from == to {
		return from.Valid() && !from.Terminal()
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// ErrInvalidTransition is matched (errors.Is) by every error that refuses a
// request because of the job's state.
var ErrInvalidTransition = errors.New("invalid job state transition")

// TransitionError refuses an operation on a job in a state that does not
// allow it. Its message names the job and its state:
// "cannot pause job 12: its state is succeeded".
type TransitionError struct {
	ID    int64
	State State
	Op    string
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("cannot %s job %d: its state is %s", e.Op, e.ID, e.State)
}

// Unwrap makes errors.Is(err, ErrInvalidTransition) hold.
func (e *TransitionError) Unwrap() error { return ErrInvalidTransition }

// Operations requested by users through the Registry.
const (
	opPause  = "pause"
	opResume = "resume"
	opCancel = "cancel"
)

// requestTarget is the pure part of Pause, Resume and Cancel: the state a job
// in state from moves to when op is requested, given whether a node holds a
// claim on it. It returns a *TransitionError when op is not allowed in from.
func requestTarget(id int64, op string, from State, claimed bool) (State, error) {
	var to State
	switch op {
	case opPause:
		switch from {
		case StatePending, StateRunning:
			// Nobody runs the job: nobody would acknowledge the request.
			to = StatePauseRequested
			if !claimed {
				to = StatePaused
			}
		}
	case opResume:
		if from == StatePaused {
			to = StateRunning
		}
	case opCancel:
		switch from {
		case StatePending, StateRunning, StatePaused, StatePauseRequested:
			to = StateCancelRequested
		}
	default:
		return "", fmt.Errorf("requesting %q of job %d: unknown operation", op, id)
	}
	if to == "" || !CanTransition(from, to) {
		return "", &TransitionError{ID: id, State: from, Op: op}
	}
	return to, nil
}
