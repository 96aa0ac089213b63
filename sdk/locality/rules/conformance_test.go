package rules_test

import (
	"testing"

	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/locality/localitytest"
	"github.com/cairnbackup/cairn/sdk/locality/rules"
)

func TestConformance(t *testing.T) {
	localitytest.Run(t, localitytest.Config{
		Matcher:  rules.Matcher{},
		Policies: map[string]locality.Policy{"default": rules.Default{}, "strict": rules.Strict{}},
	})
}
