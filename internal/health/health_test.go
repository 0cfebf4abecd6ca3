package health

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestRecordLogsTransitionsOnce: failures and successes log only when
// they change the state.
func TestRecordLogsTransitionsOnce(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	var e Endpoint
	down := errors.New("503")
	for i, tc := range []struct {
		err     error
		changed bool
	}{{nil, false}, {down, true}, {down, false}, {down, false}, {nil, true}, {nil, false}, {down, true}} {
		if got := e.Record(logger, tc.err, "endpoint", "token"); got != tc.changed {
			t.Errorf("call %d: changed %v, want %v", i, got, tc.changed)
		}
	}
	if n := strings.Count(buf.String(), Unreachable); n != 2 {
		t.Errorf("%d warnings, want 2:\n%s", n, buf.String())
	}
	if n := strings.Count(buf.String(), Reachable); n != 1 || !strings.Contains(buf.String(), "endpoint=token") {
		t.Errorf("%d info lines, want 1:\n%s", n, buf.String())
	}
	if !e.Down() {
		t.Error("not down after a failure")
	}
}
