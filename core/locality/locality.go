// Package locality parses node localities and applies the matching rules of
// DESIGN.md ("Locality") when cairn runs without a locality plugin.
package locality

import (
	"fmt"
	"strings"
)

// Tier is one key=value level of a locality.
type Tier struct{ Key, Value string }

// Locality is a node's ordered tiers, most general first.
type Locality struct{ Tiers []Tier }

// Parse reads "region=us-east1,zone=us-east1-b". The empty string is the
// empty locality.
func Parse(s string) (Locality, error) {
	var l Locality
	if strings.TrimSpace(s) == "" {
		return l, nil
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return Locality{}, fmt.Errorf("parsing locality %q: tier %q is not key=value", s, part)
		}
		if seen[k] {
			return Locality{}, fmt.Errorf("parsing locality %q: tier %q appears twice", s, k)
		}
		seen[k] = true
		l.Tiers = append(l.Tiers, Tier{k, v})
	}
	return l, nil
}

// MustParse is Parse for constants.
func MustParse(s string) Locality {
	l, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return l
}

func (l Locality) String() string {
	parts := make([]string, len(l.Tiers))
	for i, t := range l.Tiers {
		parts[i] = t.Key + "=" + t.Value
	}
	return strings.Join(parts, ",")
}

// Get returns the value of tier key.
func (l Locality) Get(key string) (string, bool) {
	for _, t := range l.Tiers {
		if t.Key == key {
			return t.Value, true
		}
	}
	return "", false
}

// Matches reports whether l satisfies filter: every tier of the filter is
// present in l with the same value, in any order.
func (l Locality) Matches(filter Locality) bool {
	for _, f := range filter.Tiers {
		if v, ok := l.Get(f.Key); !ok || v != f.Value {
			return false
		}
	}
	return true
}

// SharedPrefix is the number of leading tiers l and o have in common.
func (l Locality) SharedPrefix(o Locality) int {
	n := 0
	for n < len(l.Tiers) && n < len(o.Tiers) && l.Tiers[n] == o.Tiers[n] {
		n++
	}
	return n
}

// SharedTiers counts the tiers of l that o also has, with the same value.
func (l Locality) SharedTiers(o Locality) int {
	n := 0
	for _, t := range l.Tiers {
		if v, ok := o.Get(t.Key); ok && v == t.Value {
			n++
		}
	}
	return n
}
