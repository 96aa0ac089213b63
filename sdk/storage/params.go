package storage

import (
	"net/url"
	"slices"
	"strings"
)

// ParseParams parses a URI's raw query for Provider.Open: every parameter
// must be one of known and given at most once. Its errors name
// parameters, never values (a misspelt parameter may hold a secret), and
// wrap ErrInvalidArgument; their text does not say "invalid argument",
// so a caller can put it into its own message ("parsing %s: %v").
func ParseParams(rawQuery string, known ...string) (url.Values, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		// url's error quotes the query, secrets included.
		return nil, &paramError{"the query does not parse"}
	}
	var unknown, repeated []string
	for name, vals := range q {
		switch {
		case !slices.Contains(known, name):
			unknown = append(unknown, name)
		case len(vals) > 1:
			repeated = append(repeated, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		k := "none"
		if len(known) > 0 {
			k = strings.Join(known, ", ")
		}
		return nil, &paramError{"unknown parameters " + strings.Join(unknown, ", ") + " (known: " + k + ")"}
	}
	if len(repeated) > 0 {
		slices.Sort(repeated)
		return nil, &paramError{"parameters given more than once: " + strings.Join(repeated, ", ")}
	}
	return q, nil
}

// paramError is an ErrInvalidArgument whose text is only the reason.
type paramError struct{ msg string }

func (e *paramError) Error() string { return e.msg }
func (e *paramError) Unwrap() error { return ErrInvalidArgument }
