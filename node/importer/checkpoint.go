package importer

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
)

// checkpoint is the resume state of an import, kept in an append-only text
// file: "start <cid>" once the import created the conversation on the
// target, "page <cid> <timestamp> <msg-id>" after each imported history page
// and "done <cid>" after a finished conversation. A torn last line (the
// process died while writing it) is ignored, or, cut inside the timestamp or
// the id, points at an earlier place: pages are read again and the target
// skips what it has. Safe for concurrent use (mu).
type checkpoint struct {
	mu         sync.Mutex
	f          *os.File
	doneSet    map[string]bool
	startedSet map[string]bool
	cursors    map[string]message
}

func openCheckpoint(path string) (*checkpoint, error) {
	ck := &checkpoint{doneSet: map[string]bool{}, startedSet: map[string]bool{}, cursors: map[string]message{}}
	data, err := os.ReadFile(path) //nolint:gosec // the operator names the checkpoint file
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("import: checkpoint: %w", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "start":
			ck.startedSet[f[1]] = true
		case len(f) == 2 && f[0] == "done":
			ck.doneSet[f[1]] = true
			delete(ck.cursors, f[1])
		case len(f) == 4 && f[0] == "page":
			ts, err := strconv.ParseInt(f[2], 10, 64)
			if err == nil && ts > 0 {
				ck.cursors[f[1]] = message{ID: f[3], Timestamp: ts}
			}
		}
	}
	if ck.f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil { //nolint:gosec // the operator names the checkpoint file
		return nil, fmt.Errorf("import: checkpoint: %w", err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		// Finish a torn line so the next record starts on its own.
		if _, err := ck.f.WriteString("\n"); err != nil {
			return nil, fmt.Errorf("import: checkpoint: %w", err)
		}
	}
	return ck, nil
}

func (ck *checkpoint) isDone(cid string) bool {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	return ck.doneSet[cid]
}

func (ck *checkpoint) isStarted(cid string) bool {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	return ck.startedSet[cid]
}

func (ck *checkpoint) started(cid string) error {
	ck.mu.Lock()
	ck.startedSet[cid] = true
	ck.mu.Unlock()
	return ck.write("start " + cid + "\n")
}

func (ck *checkpoint) cursor(cid string) message {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	return ck.cursors[cid]
}

func (ck *checkpoint) page(cid string, last message) error {
	return ck.write(fmt.Sprintf("page %s %d %s\n", cid, last.Timestamp, last.ID))
}

func (ck *checkpoint) done(cid string) error {
	ck.mu.Lock()
	ck.doneSet[cid] = true
	ck.mu.Unlock()
	return ck.write("done " + cid + "\n")
}

func (ck *checkpoint) write(line string) error {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	if _, err := ck.f.WriteString(line); err != nil {
		return fmt.Errorf("import: checkpoint: %w", err)
	}
	return nil
}

func (ck *checkpoint) close() { _ = ck.f.Close() }
