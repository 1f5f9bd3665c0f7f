package migrate_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/node/importer"
	"github.com/imcluster/imcluster/test/harness"
)

// fillRealistic makes the source's data through its ordinary API: sends
// from several members (text, typed, binary, mentions), an edited and a
// recalled message, members joining late (so unread counts differ), mutes,
// unique and creator-less conversations with custom columns.
func fillRealistic(t *testing.T, src *api, convs, msgs int) {
	t.Helper()
	for c := range convs {
		members := names(fmt.Sprintf("r%d-u", c), 3)
		body := map[string]any{"name": fmt.Sprintf("room %d", c), "m": members[1:], "topic": map[string]any{"n": c}}
		if c%2 == 0 {
			body["c"] = members[0]
			body["unique"] = c%4 == 0
		} else {
			body["m"] = members
		}
		var rec map[string]any
		src.call("POST", "/1.2/rtm/conversations", nil, body, &rec)
		cid := rec["objectId"].(string)
		var edit, recall map[string]any
		for i := range msgs {
			from := members[i%2] // the third member only reads
			msg := map[string]any{"from_client": from, "message": fmt.Sprintf(`{"_lctype":-1,"_lctext":"hello %d"}`, i)}
			switch i % 10 {
			case 3:
				msg["message"] = base64.StdEncoding.EncodeToString([]byte{0, 1, 2, byte(i)})
				msg["binary"] = true
			case 5:
				msg["mention_client_ids"] = []string{members[2]}
			case 7:
				msg["mention_all"] = true
				msg["message"] = fmt.Sprintf("plain text %d", i)
			}
			var sent map[string]any
			src.call("POST", "/1.2/rtm/conversations/"+cid+"/messages", nil, msg, &sent)
			sent["from_client"] = from
			switch i {
			case 1:
				edit = sent
			case 2:
				recall = sent
			}
			if i == msgs/2 {
				src.call("POST", "/1.2/rtm/conversations/"+cid+"/members", nil, map[string]any{"client_ids": []string{fmt.Sprintf("late%d", c)}}, nil)
			}
		}
		if edit != nil {
			src.call("PUT", fmt.Sprintf("/1.2/rtm/conversations/%s/messages/%s", cid, edit["msg-id"]), nil,
				map[string]any{"from_client": edit["from_client"], "message": "edited", "timestamp": edit["timestamp"]}, nil)
		}
		if recall != nil {
			src.call("PUT", fmt.Sprintf("/1.2/rtm/conversations/%s/messages/%s/recall", cid, recall["msg-id"]), nil,
				map[string]any{"from_client": recall["from_client"], "timestamp": recall["timestamp"]}, nil)
		}
		src.call("POST", "/1.2/rtm/conversations/"+cid+"/mutes", nil, map[string]any{"client_ids": []string{members[2]}}, nil)
		if c%3 == 0 {
			src.call("POST", "/1.2/rtm/conversations/"+cid+"/member-infos", nil, map[string]any{"clientId": members[1], "role": "Manager"}, nil)
			src.call("POST", "/1.2/rtm/conversations/"+cid+"/permanent-silenceds", nil, map[string]any{"client_ids": []string{members[2]}}, nil)
			src.call("POST", "/1.2/rtm/conversations/"+cid+"/blacklists", nil, map[string]any{"client_ids": []string{fmt.Sprintf("troll%d", c)}}, nil)
		}
	}
}

// TestImportFromACluster imports a source cluster's conversations and
// history into a fresh three-node cluster with `imnode import`, verifies
// them message by message, and checks that a second run imports nothing and
// that an interrupted run resumes from its checkpoint.
func TestImportFromACluster(t *testing.T) {
	const convs, msgs = 12, 45
	source := harness.Start(t, 1, harness.Options{})
	target := harness.Start(t, 3, harness.Options{})
	src, dst := newAPI(t, source), newAPI(t, target)
	fillRealistic(t, src, convs, msgs)

	// The command as an operator runs it (plain progress lines: no TTY).
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	checkpoint := filepath.Join(t.TempDir(), "import.checkpoint")
	run := func(extra ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		args := append([]string{"import", "--source-url", src.base, "--source-app-id", src.endpoint().AppID,
			"--target-url", dst.base, "--checkpoint", checkpoint}, extra...)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "IMPORT_SOURCE_MASTER_KEY="+src.endpoint().MasterKey, "IMPORT_TARGET_MASTER_KEY="+dst.endpoint().MasterKey)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("imnode %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	dry := run("--dry-run")
	if !strings.Contains(dry, fmt.Sprintf("would import (dry run): %d conversations", convs)) ||
		!strings.Contains(dry, fmt.Sprintf("%d messages read", convs*msgs)) {
		t.Fatalf("dry run report:\n%s", dry)
	}
	if n := len(dst.conversations()); n != 0 {
		t.Fatalf("the dry run wrote %d conversations", n)
	}
	out := run()
	want := fmt.Sprintf("new on the target: %d conversations, %d messages (0 were there already)", convs, convs*msgs)
	if !strings.Contains(out, want) || !strings.Contains(out, "import: ") {
		t.Fatalf("import report lacks %q or progress lines:\n%s", want, out)
	}
	if n := verify(t, src, dst); n != convs*msgs {
		t.Fatalf("verified %d messages, want %d", n, convs*msgs)
	}
	// Again with the checkpoint: nothing is read or written.
	out = run()
	if !strings.Contains(out, " 0 messages read") || !strings.Contains(out, fmt.Sprintf("%d conversations skipped as done", convs)) {
		t.Fatalf("re-run with the checkpoint:\n%s", out)
	}
	// Again without it: everything is read, nothing is new.
	rep, err := importer.Run(context.Background(), importer.Config{Source: src.endpoint(), Target: dst.endpoint(), Unread: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Messages != convs*msgs || rep.Imported != 0 || rep.Existing != convs*msgs || rep.NewConversations != 0 {
		t.Fatalf("re-run without a checkpoint: %+v, want every message existing", rep.Progress)
	}
	verify(t, src, dst)

	// Catch-up after the switch: users have read on the target, new
	// messages arrived on the source. Another run brings the messages and
	// leaves the users' read state alone.
	var rec struct {
		Results []map[string]any `json:"results"`
	}
	src.call("GET", "/1.2/rtm/conversations", url.Values{"where": {`{"name":"room 1"}`}}, nil, &rec)
	cid := rec.Results[0]["objectId"].(string)
	dst.call("PUT", "/1.2/rtm/import/conversations/"+cid+"/unread", nil, map[string]any{"unread": map[string]int{}}, nil)
	for i := range 2 {
		src.call("POST", "/1.2/rtm/conversations/"+cid+"/messages", nil, map[string]any{"from_client": "r1-u0", "message": fmt.Sprintf("late %d", i)}, nil)
	}
	catchUp, err := importer.Run(context.Background(), importer.Config{Source: src.endpoint(), Target: dst.endpoint(), Unread: true, Moderation: true})
	if err != nil {
		t.Fatal(err)
	}
	if catchUp.Imported != 2 {
		t.Fatalf("catch-up imported %d messages, want 2", catchUp.Imported)
	}
	if got, was := dst.unread("r1-u2", cid), src.unread("r1-u2", cid); got != 2 || was == 2 {
		t.Fatalf("after the catch-up r1-u2 has %v unread on the target (source %v), want 2: its read state was overwritten", got, was)
	}
}

// TestImportResumes interrupts an import half way and runs it again with
// the same checkpoint: the second run skips the finished conversations and
// the result is complete.
func TestImportResumes(t *testing.T) {
	const convs, msgs = 10, 30
	source := harness.Start(t, 1, harness.Options{})
	target := harness.Start(t, 1, harness.Options{})
	src, dst := newAPI(t, source), newAPI(t, target)
	fillBulk(t, src, convs, msgs)
	checkpoint := filepath.Join(t.TempDir(), "ck")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := importer.Config{Source: src.endpoint(), Target: dst.endpoint(), Checkpoint: checkpoint, Unread: true,
		Workers: 1, PageSize: 7, Interval: time.Millisecond}
	cfg.Progress = func(p importer.Progress) {
		if p.ConversationsDone >= convs/2 {
			cancel()
		}
	}
	first, err := importer.Run(ctx, cfg)
	if err == nil || first.ConversationsDone >= convs {
		t.Fatalf("the interrupted run finished: %v %+v", err, first)
	}
	cfg.Progress = nil
	second, err := importer.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A page the target committed just as the first run was cancelled is
	// found existing by the second.
	if second.SkippedDone < convs/2 || first.Imported+second.Imported > convs*msgs || second.Messages >= convs*msgs {
		t.Fatalf("resume: first %+v, second %+v", first.Progress, second.Progress)
	}
	if n := verify(t, src, dst); n != convs*msgs {
		t.Fatalf("verified %d messages", n)
	}
}
