package etcdutil

import (
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestSlogCoreForwardsWarnAndAbove(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	zl := zap.New(newSlogCore(logger, zap.WarnLevel)).With(zap.String("member", "cairn"))
	zl.Info("dropped")
	zl.Warn("slow fdatasync", zap.Int("took_ms", 1200), zap.String("dir", "/tmp/x"))
	zl.Error("lost leader")

	got := buf.String()
	if strings.Contains(got, "dropped") {
		t.Errorf("info entry forwarded:\n%s", got)
	}
	for _, want := range []string{
		`level=WARN msg="slow fdatasync" member=cairn dir=/tmp/x took_ms=1200`,
		`level=ERROR msg="lost leader" member=cairn`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}
