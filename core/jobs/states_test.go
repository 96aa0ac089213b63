package jobs

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata files")

// testCase is one block of a datadriven file:
//
//	<command> [key=value ...]
//	----
//	<expected output, up to a blank line>
type testCase struct {
	line     int
	cmd      string
	args     map[string]string
	expected string
	outStart int // index of the first expected line
	outEnd   int // index after the last expected line
}

func parseCases(t *testing.T, lines []string) []testCase {
	var cases []testCase
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		fields := strings.Fields(l)
		c := testCase{line: i + 1, cmd: fields[0], args: map[string]string{}}
		for _, f := range fields[1:] {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				t.Fatalf("line %d: argument %q is not key=value", i+1, f)
			}
			c.args[k] = v
		}
		i++
		if i >= len(lines) || lines[i] != "----" {
			t.Fatalf("line %d: want ---- after the command", i+1)
		}
		c.outStart = i + 1
		j := c.outStart
		for j < len(lines) && lines[j] != "" {
			j++
		}
		c.outEnd = j
		c.expected = strings.Join(lines[c.outStart:c.outEnd], "\n")
		cases = append(cases, c)
		i = j
	}
	return cases
}

// runDataDriven runs every case of path through fn; with -rewrite it
// writes fn's output back as the expected output.
func runDataDriven(t *testing.T, path string, fn func(t *testing.T, c testCase) string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	cases := parseCases(t, lines)
	var out []string
	prev := 0
	for _, c := range cases {
		got := strings.TrimRight(fn(t, c), "\n")
		if *rewrite {
			out = append(out, lines[prev:c.outStart]...)
			out = append(out, got)
			prev = c.outEnd
			continue
		}
		if got != c.expected {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", path, c.line, c.cmd, got, c.expected)
		}
	}
	if *rewrite {
		out = append(out, lines[prev:]...)
		if err := os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStateMachine runs testdata/states:
//
//	transitions               every state and the states it may move to
//	can from=<s> to=<s>       whether one move is allowed
//	request op=<op> claimed=<bool>
//	                          for every state, what Pause/Resume/Cancel does
func TestStateMachine(t *testing.T) {
	runDataDriven(t, filepath.Join("testdata", "states"), func(t *testing.T, c testCase) string {
		var b strings.Builder
		switch c.cmd {
		case "transitions":
			for _, from := range AllStates {
				var to []string
				for _, s := range AllStates {
					if s != from && CanTransition(from, s) {
						to = append(to, string(s))
					}
				}
				kind := ""
				switch {
				case from.Terminal():
					kind = " (terminal)"
				case from.Adoptable():
					kind = " (adoptable)"
				}
				if len(to) == 0 {
					to = []string{"(none)"}
				}
				fmt.Fprintf(&b, "%s%s -> %s\n", from, kind, strings.Join(to, ", "))
			}
		case "can":
			fmt.Fprintf(&b, "%t", CanTransition(State(c.args["from"]), State(c.args["to"])))
		case "request":
			claimed := c.args["claimed"] == "true"
			for _, from := range AllStates {
				to, err := requestTarget(12, c.args["op"], from, claimed)
				if err != nil {
					if !errors.Is(err, ErrInvalidTransition) {
						t.Errorf("line %d: %v does not match ErrInvalidTransition", c.line, err)
					}
					fmt.Fprintf(&b, "%s: error: %v\n", from, err)
					continue
				}
				fmt.Fprintf(&b, "%s: %s\n", from, to)
			}
		default:
			t.Fatalf("line %d: unknown command %q", c.line, c.cmd)
		}
		return b.String()
	})
}

// TestStateMachineShape checks properties of the whole table.
func TestStateMachineShape(t *testing.T) {
	for from, tos := range transitions {
		if !from.Valid() {
			t.Errorf("invalid state %q in table", from)
		}
		if from.Terminal() && len(tos) > 0 {
			t.Errorf("terminal state %s has transitions %v", from, tos)
		}
		if from.Terminal() && CanTransition(from, from) {
			t.Errorf("terminal state %s may be rewritten", from)
		}
		for _, to := range tos {
			if !to.Valid() {
				t.Errorf("%s -> invalid state %q", from, to)
			}
		}
	}
	if len(transitions) != len(AllStates) {
		t.Errorf("table has %d states, AllStates %d", len(transitions), len(AllStates))
	}
	// Every state is reachable from pending, and every state can end.
	reach := func(from State) map[State]bool {
		seen := map[State]bool{from: true}
		stack := []State{from}
		for len(stack) > 0 {
			s := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, to := range transitions[s] {
				if !seen[to] {
					seen[to] = true
					stack = append(stack, to)
				}
			}
		}
		return seen
	}
	fromPending := reach(StatePending)
	for _, s := range AllStates {
		if !fromPending[s] {
			t.Errorf("%s is not reachable from pending", s)
		}
		ends := false
		for to := range reach(s) {
			ends = ends || to.Terminal()
		}
		if !ends {
			t.Errorf("%s cannot reach a terminal state", s)
		}
	}
}

func TestRetryMarks(t *testing.T) {
	base := errors.New("exporting span: connection reset")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"unmarked", base, false},
		{"retryable", MarkRetryable(base), true},
		{"wrapped retryable", fmt.Errorf("running backup: %w", MarkRetryable(base)), true},
		{"permanent over retryable", MarkPermanent(MarkRetryable(base)), false},
		{"retryable over permanent", MarkRetryable(MarkPermanent(base)), true},
		{"nil", nil, false},
	} {
		if got := IsRetryable(tc.err); got != tc.want {
			t.Errorf("%s: IsRetryable = %t, want %t", tc.name, got, tc.want)
		}
		if tc.err != nil && !errors.Is(tc.err, base) {
			t.Errorf("%s: mark hides the cause", tc.name)
		}
	}
	if MarkRetryable(nil) != nil || MarkPermanent(nil) != nil {
		t.Error("marking nil gave non-nil")
	}
}
