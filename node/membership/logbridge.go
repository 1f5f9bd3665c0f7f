package membership

import (
	"bytes"
	"context"
	"log/slog"
	"sync/atomic"
)

// logBridge adapts memberlist's *log.Logger lines ("[WARN] memberlist:
// ...") to slog, keeping their level. memberlist writes from its own
// goroutines; slog handlers are safe for that. memberlist's probe
// goroutines can outlive its Shutdown, so lines after Shutdown (down set)
// are dropped.
type logBridge struct {
	log  *slog.Logger
	down *atomic.Bool
}

var levelPrefixes = []struct {
	prefix []byte
	level  slog.Level
}{
	{[]byte("[ERR] "), slog.LevelError},
	{[]byte("[ERROR] "), slog.LevelError},
	{[]byte("[WARN] "), slog.LevelWarn},
	{[]byte("[INFO] "), slog.LevelInfo},
	{[]byte("[DEBUG] "), slog.LevelDebug},
}

func (l logBridge) Write(p []byte) (int, error) {
	if l.down != nil && l.down.Load() {
		return len(p), nil
	}
	msg := bytes.TrimRight(p, "\n")
	level := slog.LevelInfo
	for _, lp := range levelPrefixes {
		if i := bytes.Index(msg, lp.prefix); i >= 0 {
			level, msg = lp.level, msg[i+len(lp.prefix):]
			break
		}
	}
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, "Memberlist", "line", string(msg))
	}
	return len(p), nil
}
