package storage_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/sdk/storage"
)

func TestParseParams(t *testing.T) {
	q, err := storage.ParseParams("REGION=eu&KEY=s3cr%2Bt", "KEY", "REGION", "AUTH")
	if err != nil || q.Get("KEY") != "s3cr+t" || q.Get("REGION") != "eu" || q.Has("AUTH") {
		t.Fatalf("ParseParams = %v, %v", q, err)
	}
	for _, tc := range []struct{ query, want string }{
		{"SECRET=hunter2&KEY=x&ZED=hunter3", "unknown parameters SECRET, ZED (known: KEY, REGION)"},
		{"KEY=hunter2&KEY=hunter3&REGION=a&REGION=b", "parameters given more than once: KEY, REGION"},
		{"KEY=%zzhunter2", "the query does not parse"},
	} {
		_, err := storage.ParseParams(tc.query, "KEY", "REGION")
		if err == nil || err.Error() != tc.want || !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("ParseParams(%q) = %v, want %q wrapping ErrInvalidArgument", tc.query, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter") {
			t.Errorf("ParseParams(%q) quotes a value: %v", tc.query, err)
		}
	}
	if _, err := storage.ParseParams("A=1"); err == nil || err.Error() != "unknown parameters A (known: none)" {
		t.Errorf("no known parameters: %v", err)
	}
}
