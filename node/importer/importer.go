// Package importer copies a LeanCloud app's IM data into a running
// imcluster (`imnode import`, docs/migrate.md).
//
// It reads conversations from a _Conversation data-export file or from the
// source's REST API (LeanCloud's, or another imcluster's: they serve the
// same API), pages each conversation's history oldest first with the
// source's master key, and writes both through the target's import
// endpoints (POST /1.2/rtm/import/conversations and .../import/messages),
// which keep conversation ids, message ids, senders, timestamps, types and
// attributes. Each member's unread count is then copied (GET
// .../clients/{id}/unread-count on the source, PUT
// .../import/conversations/{id}/unread on the target).
//
// Idempotent and resumable: the target skips ids it already has, and a
// checkpoint file records every finished conversation and the last
// imported page of each one in progress, so a second run reads and writes
// nothing already done. Conversations are imported by Workers goroutines,
// each owning one conversation at a time; Run returns when all are done,
// the first error happened, or ctx ended, and no goroutine outlives it.
package importer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint is an IM REST API and the app's credentials on it.
type Endpoint struct {
	// URL is the API's base URL (https://<app domain> for LeanCloud,
	// http(s)://<client address> for imcluster), without a version.
	URL       string
	AppID     string
	MasterKey string
}

// Config configures Run.
type Config struct {
	Source Endpoint
	Target Endpoint
	// ConversationsFile is a _Conversation export (a JSON array, an object
	// with "results", or JSON Lines). Empty means: list the conversations
	// through the source's REST API.
	ConversationsFile string
	// Checkpoint is the checkpoint file; empty means no resume.
	Checkpoint string
	// DryRun reads the source (and asks the target which conversations it
	// has) without writing anything.
	DryRun bool
	// Unread copies each member's unread count; false marks everything
	// read.
	Unread bool
	// Moderation copies each normal conversation's member roles, permanent
	// silences and blacklist (three more source calls per conversation).
	Moderation bool
	// Workers is the number of conversations imported at once. Zero value
	// means 4.
	Workers int
	// PageSize is the history page size (LeanCloud allows up to 1000).
	// Zero value means 1000.
	PageSize int
	// HTTP is the client for both APIs. Zero value means a client with a
	// 60 s timeout.
	HTTP *http.Client
	// Progress receives progress reports, at most every Interval and once
	// at the end. Nil means none.
	Progress func(Progress)
	// Interval is the period of progress reports. Zero value means 1 s.
	Interval time.Duration
}

// Progress is the state of a run.
type Progress struct {
	Conversations     int // total to look at
	ConversationsDone int
	Messages          int64 // messages read from the source
	Imported          int64 // messages the target did not have
	Existing          int64 // messages the target had already
	NewConversations  int64 // conversations created on the target
	SkippedDone       int   // conversations the checkpoint had as done
	Elapsed           time.Duration
	Done              bool
}

// Rate is messages read per second.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Messages) / p.Elapsed.Seconds()
}

// ETA estimates the time left from the conversations done so far.
func (p Progress) ETA() (time.Duration, bool) {
	done := p.ConversationsDone - p.SkippedDone
	left := p.Conversations - p.ConversationsDone
	if done <= 0 || p.Elapsed <= 0 {
		return 0, false
	}
	return time.Duration(float64(p.Elapsed) / float64(done) * float64(left)), true
}

// Report is what a run did (or, with DryRun, would do).
type Report struct {
	Progress
	// ByType counts the source's conversations: normal, chatroom, system.
	ByType map[string]int
	// InTarget counts the conversations the target already has (DryRun).
	InTarget int
	// SystemSkipped lists system conversations, whose messages are not
	// imported (their per-subscriber timelines are not readable by
	// conversation).
	SystemSkipped int
}

// record is a _Conversation record as JSON plus the keys the importer reads.
type record struct {
	raw      json.RawMessage
	id       string
	members  []string
	room     bool
	system   bool
	objectID string
}

func parseRecord(raw json.RawMessage) (record, error) {
	var r struct {
		ObjectID string   `json:"objectId"`
		M        []string `json:"m"`
		Tr       bool     `json:"tr"`
		Sys      bool     `json:"sys"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return record{}, err
	}
	if r.ObjectID == "" {
		return record{}, errors.New("record without objectId")
	}
	return record{raw: raw, id: r.ObjectID, members: r.M, room: r.Tr, system: r.Sys, objectID: r.ObjectID}, nil
}

// message is the part of a history record the importer pages by.
type message struct {
	ID        string `json:"msg-id"`
	Timestamp int64  `json:"timestamp"`
}

type runner struct {
	cfg  Config
	ck   *checkpoint
	stat struct {
		messages, imported, existing, newConvs atomic.Int64
		convsDone                              atomic.Int64
	}
	total, skipped int
	start          time.Time
}

// Run imports everything cfg names.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.PageSize <= 0 || cfg.PageSize > 1000 {
		cfg.PageSize = 1000
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	for _, e := range []Endpoint{cfg.Source, cfg.Target} {
		if e.AppID == "" || e.MasterKey == "" {
			return nil, errors.New("import: the source and the target need an app id and a master key")
		}
	}
	if cfg.ConversationsFile == "" && cfg.Source.URL == "" {
		return nil, errors.New("import: name the source API (--source-url) or a _Conversation export (--conversations-file)")
	}
	if cfg.Target.URL == "" {
		return nil, errors.New("import: the target URL is required")
	}
	r := &runner{cfg: cfg, start: time.Now()}
	var err error
	if cfg.Checkpoint != "" && !cfg.DryRun {
		if r.ck, err = openCheckpoint(cfg.Checkpoint); err != nil {
			return nil, err
		}
		defer r.ck.close()
	}
	var recs []record
	if cfg.ConversationsFile != "" {
		recs, err = readExport(cfg.ConversationsFile)
	} else {
		recs, err = r.listSource(ctx)
	}
	if err != nil {
		return nil, err
	}
	rep := &Report{ByType: map[string]int{}}
	for _, rec := range recs {
		switch {
		case rec.room:
			rep.ByType["chatroom"]++
		case rec.system:
			rep.ByType["system"]++
			rep.SystemSkipped++
		default:
			rep.ByType["normal"]++
		}
	}
	r.total = len(recs)
	if cfg.DryRun {
		if rep.InTarget, err = r.countInTarget(ctx, recs); err != nil {
			return nil, err
		}
	}
	stopProgress := r.reportLoop()
	err = r.importAll(ctx, recs)
	stopProgress()
	rep.Progress = r.progress(true)
	return rep, err
}

func (r *runner) progress(done bool) Progress {
	return Progress{Conversations: r.total, ConversationsDone: int(r.stat.convsDone.Load()), Messages: r.stat.messages.Load(),
		Imported: r.stat.imported.Load(), Existing: r.stat.existing.Load(), NewConversations: r.stat.newConvs.Load(),
		SkippedDone: r.skipped, Elapsed: time.Since(r.start), Done: done}
}

// reportLoop reports progress every Interval until the returned stop is
// called, which waits for the loop to end and sends the final report.
func (r *runner) reportLoop() (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(r.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				r.cfg.Progress(r.progress(false))
			}
		}
	})
	return func() {
		close(quit)
		wg.Wait()
		r.cfg.Progress(r.progress(true))
	}
}

// importAll runs the workers over recs.
func (r *runner) importAll(ctx context.Context, recs []record) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var todo []record
	for _, rec := range recs {
		if r.ck != nil && r.ck.isDone(rec.id) {
			r.skipped++
			r.stat.convsDone.Add(1)
			continue
		}
		todo = append(todo, rec)
	}
	jobs := make(chan record)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range r.cfg.Workers {
		wg.Go(func() {
			for rec := range jobs {
				if err := r.importOne(ctx, rec); err != nil {
					errOnce.Do(func() {
						firstErr = fmt.Errorf("import: conversation %s: %w", rec.id, err)
						cancel()
					})
					return
				}
				r.stat.convsDone.Add(1)
			}
		})
	}
feed:
	for _, rec := range todo {
		select {
		case jobs <- rec:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// importOne imports one conversation: its record, its history page by
// page (resuming after the checkpoint's last page) and its unread counts.
//
// Read pointers are set only for a conversation this import created (in
// this run, or in an earlier run of the same checkpoint): a catch-up run
// after the clients switched over finds the conversation on the target and
// leaves the users' read state alone.
func (r *runner) importOne(ctx context.Context, rec record) error {
	owned := r.ck != nil && r.ck.isStarted(rec.id)
	if !r.cfg.DryRun && r.ck != nil && !owned {
		// Record the intent before creating it: a run stopped between the
		// creation and its answer still owns the conversation on resume.
		var res struct {
			Results []json.RawMessage `json:"results"`
		}
		if err := r.call(ctx, r.cfg.Target, "GET", "/1.2/rtm/conversations/"+url.PathEscape(rec.id), nil, nil, &res); err != nil {
			return err
		}
		if len(res.Results) == 0 {
			if err := r.ck.started(rec.id); err != nil {
				return err
			}
			owned = true
		}
	}
	if !r.cfg.DryRun {
		raw := rec.raw
		if r.cfg.Moderation && !rec.room && !rec.system {
			var err error
			if raw, err = r.withModeration(ctx, rec); err != nil {
				return err
			}
		}
		var res struct {
			Imported int64 `json:"imported"`
		}
		if err := r.call(ctx, r.cfg.Target, "POST", "/1.2/rtm/import/conversations", nil, []json.RawMessage{raw}, &res); err != nil {
			return err
		}
		r.stat.newConvs.Add(res.Imported)
		owned = owned || res.Imported > 0
	}
	if rec.system {
		return r.finish(rec)
	}
	path := "/1.2/rtm/conversations/" + url.PathEscape(rec.id) + "/messages"
	if rec.room {
		path = "/1.2/rtm/chatrooms/" + url.PathEscape(rec.id) + "/messages"
	}
	var last message
	if r.ck != nil {
		last = r.ck.cursor(rec.id)
	}
	for {
		q := url.Values{"reversed": {"true"}, "limit": {strconv.Itoa(r.cfg.PageSize)}}
		if last.Timestamp > 0 {
			q.Set("timestamp", strconv.FormatInt(last.Timestamp, 10))
			q.Set("msgid", last.ID)
		}
		var page []json.RawMessage
		if err := r.call(ctx, r.cfg.Source, "GET", path, q, nil, &page); err != nil {
			return err
		}
		r.stat.messages.Add(int64(len(page)))
		if len(page) > 0 {
			if err := json.Unmarshal(page[len(page)-1], &last); err != nil {
				return fmt.Errorf("source history record: %w", err)
			}
			if !r.cfg.DryRun {
				var res struct {
					Imported int64 `json:"imported"`
					Existing int64 `json:"existing"`
				}
				body := map[string]any{"conv_id": rec.id, "messages": page}
				if err := r.call(ctx, r.cfg.Target, "POST", "/1.2/rtm/import/messages", nil, body, &res); err != nil {
					return err
				}
				r.stat.imported.Add(res.Imported)
				r.stat.existing.Add(res.Existing)
				if r.ck != nil {
					if err := r.ck.page(rec.id, last); err != nil {
						return err
					}
				}
			}
		}
		if len(page) < r.cfg.PageSize {
			break
		}
	}
	if !r.cfg.DryRun && !rec.room && owned {
		if err := r.copyUnread(ctx, rec); err != nil {
			return err
		}
	}
	return r.finish(rec)
}

// withModeration adds the conversation's member roles, permanent silences
// and blacklist, read from the source, to its record (as _memberRoles,
// _silenced and _blacklist, which the import endpoint reads).
func (r *runner) withModeration(ctx context.Context, rec record) (json.RawMessage, error) {
	base := "/1.2/rtm/conversations/" + url.PathEscape(rec.id)
	var infos struct {
		Results []struct {
			ClientID string `json:"clientId"`
			Role     string `json:"role"`
		} `json:"results"`
	}
	if err := r.call(ctx, r.cfg.Source, "GET", base+"/member-infos", url.Values{"limit": {"1000"}}, nil, &infos); err != nil {
		return nil, err
	}
	roles := map[string]string{}
	for _, in := range infos.Results {
		if in.Role == "Manager" || in.Role == "Member" {
			roles[in.ClientID] = in.Role
		}
	}
	silenced, err := r.idList(ctx, base+"/permanent-silenceds")
	if err != nil {
		return nil, err
	}
	blocked, err := r.idList(ctx, base+"/blacklists")
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(rec.raw, &m); err != nil {
		return nil, err
	}
	m["_memberRoles"], m["_silenced"], m["_blacklist"] = roles, silenced, blocked
	return json.Marshal(m)
}

// maxListPages bounds the pages of one moderation list (100 ids each).
const maxListPages = 200

// idList reads a {"client_ids", "next"} list to its end.
func (r *runner) idList(ctx context.Context, path string) ([]string, error) {
	out := []string{}
	next := ""
	for range maxListPages {
		q := url.Values{"limit": {"100"}}
		if next != "" {
			q.Set("next", next)
		}
		var page struct {
			ClientIDs []string `json:"client_ids"`
			Next      string   `json:"next"`
		}
		if err := r.call(ctx, r.cfg.Source, "GET", path, q, nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.ClientIDs...)
		if page.Next == "" || len(page.ClientIDs) == 0 {
			return out, nil
		}
		next = page.Next
	}
	return nil, fmt.Errorf("%s: more than %d pages", path, maxListPages)
}

func (r *runner) finish(rec record) error {
	if r.ck == nil {
		return nil
	}
	return r.ck.done(rec.id)
}

// copyUnread reads each member's unread count on the source and sets it on
// the target (0 for everybody without Unread).
func (r *runner) copyUnread(ctx context.Context, rec record) error {
	unread := map[string]int{}
	if r.cfg.Unread {
		for _, m := range rec.members {
			var res struct {
				Count int `json:"count"`
			}
			err := r.call(ctx, r.cfg.Source, "GET", "/1.2/rtm/clients/"+url.PathEscape(m)+"/unread-count", url.Values{"conv_id": {rec.id}}, nil, &res)
			if err != nil {
				return err
			}
			if res.Count > 0 {
				unread[m] = res.Count
			}
		}
	}
	return r.call(ctx, r.cfg.Target, "PUT", "/1.2/rtm/import/conversations/"+url.PathEscape(rec.id)+"/unread", nil,
		map[string]any{"unread": unread}, nil)
}

// listSource pages the source's conversations of every type by objectId.
func (r *runner) listSource(ctx context.Context) ([]record, error) {
	var out []record
	after := ""
	for {
		where := "{}"
		if after != "" {
			b, _ := json.Marshal(map[string]any{"objectId": map[string]any{"$gt": after}})
			where = string(b)
		}
		var res struct {
			Results []json.RawMessage `json:"results"`
		}
		q := url.Values{"where": {where}, "order": {"objectId"}, "limit": {"1000"}}
		if err := r.call(ctx, r.cfg.Source, "GET", "/1.2/rtm/all-conversations", q, nil, &res); err != nil {
			return nil, fmt.Errorf("import: listing the source's conversations: %w", err)
		}
		for _, raw := range res.Results {
			rec, err := parseRecord(raw)
			if err != nil {
				return nil, fmt.Errorf("import: source conversation: %w", err)
			}
			out = append(out, rec)
			after = rec.objectID
		}
		if len(res.Results) < 1000 {
			return out, nil
		}
	}
}

// countInTarget counts the conversations the target already has.
func (r *runner) countInTarget(ctx context.Context, recs []record) (int, error) {
	n := 0
	for _, rec := range recs {
		var res struct {
			Results []json.RawMessage `json:"results"`
		}
		if err := r.call(ctx, r.cfg.Target, "GET", "/1.2/rtm/conversations/"+url.PathEscape(rec.id), nil, nil, &res); err != nil {
			return 0, err
		}
		if len(res.Results) > 0 {
			n++
		}
	}
	return n, nil
}

// readExport reads a _Conversation export file: a JSON array, an object
// with "results", or one record per line.
func readExport(path string) ([]record, error) {
	data, err := os.ReadFile(path) //nolint:gosec // the operator names the export file
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	var list []json.RawMessage
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '[':
		err = json.Unmarshal(trimmed, &list)
	default:
		var obj struct {
			Results []json.RawMessage `json:"results"`
		}
		if json.Unmarshal(trimmed, &obj) == nil && obj.Results != nil {
			list = obj.Results
			break
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			list = append(list, json.RawMessage(append([]byte(nil), line...)))
		}
		err = sc.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("import: %s is not a _Conversation export (JSON array, {\"results\": [...]} or JSON Lines): %w", path, err)
	}
	out := make([]record, 0, len(list))
	for i, raw := range list {
		rec, err := parseRecord(raw)
		if err != nil {
			return nil, fmt.Errorf("import: %s record %d: %w", path, i, err)
		}
		out = append(out, rec)
	}
	return out, nil
}

// APIError is a non-2xx answer of an API.
type APIError struct {
	Method, URL string
	Status      int
	Body        string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.URL, e.Status, e.Body)
}

// retryable reports answers worth another try: overload and the cluster's
// temporary 4200/503 answers.
func retryable(err error) bool {
	if ae, ok := errors.AsType[*APIError](err); ok {
		return ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusTooManyRequests || ae.Status >= 500
	}
	return err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// maxAttempts bounds the tries of one call.
const maxAttempts = 5

// call performs one API call with the master key, retrying temporary
// failures with back-off (every call is idempotent).
func (r *runner) call(ctx context.Context, e Endpoint, method, path string, q url.Values, in, out any) error {
	u := strings.TrimRight(e.URL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := r.callOnce(ctx, e, method, u, body, out)
		if err == nil || !retryable(err) || attempt == maxAttempts {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff *= 2
	}
}

// maxAnswer bounds one API answer (a page of 1000 messages of up to 5 KB).
const maxAnswer = 32 << 20

func (r *runner) callOnce(ctx context.Context, e Endpoint, method, u string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("X-LC-Id", e.AppID)
	req.Header.Set("X-LC-Key", e.MasterKey+",master")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.cfg.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return err
	}
	if len(data) > maxAnswer {
		return fmt.Errorf("%s %s: answer larger than %d bytes", method, u, maxAnswer)
	}
	if resp.StatusCode/100 != 2 {
		return &APIError{Method: method, URL: u, Status: resp.StatusCode, Body: strings.TrimSpace(string(data))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer: %w", method, u, err)
	}
	return nil
}
