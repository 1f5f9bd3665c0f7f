package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/protocol"
)

// pair logs Tom and Jerry in and creates their 1:1 conversation; Jerry's
// membership events are consumed.
func pair(t *testing.T, tn *testNode) (tom, jerry *client.IMClient, conv *client.Conversation) {
	t.Helper()
	tom, jerry = tn.login(t, uid("Tom")), tn.login(t, uid("Jerry"))
	conv, err := tom.CreateConversation(testCtx(t), client.CreateOptions{Members: []string{jerry.ID()}, Unique: true})
	mustNoErr(t, err)
	waitEvent(t, jerry, membership(client.MembersJoined, conv.ID()))
	return tom, jerry, conv
}

func TestClientNodeTypedMessages(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tom, jerry, conv := pair(t, tn)
	file := &client.File{URL: "http://example.invalid/a.gif", ObjectID: "f1", MetaData: map[string]any{"width": 10.0, "name": "a.gif"}}
	typed := []*client.TypedMessage{
		{Type: client.TypeImage, Text: "发自我的 Ins", Attributes: map[string]any{"location": "旧金山"}, File: file},
		{Type: client.TypeAudio, Text: "听听人类的神曲", File: &client.File{URL: "http://example.invalid/a.mp3", MetaData: map[string]any{"duration": 12.5}}},
		{Type: client.TypeVideo, File: &client.File{URL: "http://example.invalid/a.mp4"}},
		{Type: client.TypeFile, File: &client.File{URL: "http://example.invalid/a.pdf", MetaData: map[string]any{"size": 1024.0}}},
		{Type: client.TypeLocation, Text: "蛋糕店的位置", Location: &client.Location{Latitude: 31.3753285, Longitude: 120.9664658}},
		{Type: 123, Text: "custom", Extra: map[string]any{"foo": "bar"}},
	}
	for _, tm := range typed {
		out, err := client.NewTyped(tm)
		mustNoErr(t, err)
		if _, err := conv.Send(ctx, out); err != nil {
			t.Fatalf("send type %d: %v", tm.Type, err)
		}
		got := waitEvent[client.MessageEvent](t, jerry, nil).Message
		back, err := got.Typed()
		mustNoErr(t, err)
		if back.Type != tm.Type || back.Text != tm.Text || fmt.Sprint(back.File) != fmt.Sprint(tm.File) ||
			fmt.Sprint(back.Location) != fmt.Sprint(tm.Location) || fmt.Sprint(back.Extra) != fmt.Sprint(tm.Extra) {
			t.Fatalf("received %+v, sent %+v", back, tm)
		}
	}
	// Plain and binary content, mentions.
	_, err := conv.Send(ctx, client.NewRaw("hello"))
	mustNoErr(t, err)
	if m := waitEvent[client.MessageEvent](t, jerry, nil).Message; m.Content != "hello" || m.Binary != nil {
		t.Fatalf("raw = %+v", m)
	}
	bin := []byte{0, 1, 2, 255}
	_, err = conv.Send(ctx, client.NewBinary(bin))
	mustNoErr(t, err)
	if m := waitEvent[client.MessageEvent](t, jerry, nil).Message; !bytes.Equal(m.Binary, bin) || m.Content != "" {
		t.Fatalf("binary = %+v", m)
	}
	mention := client.NewText("@Jerry")
	mention.MentionPids = []string{jerry.ID()}
	_, err = conv.Send(ctx, mention)
	mustNoErr(t, err)
	if m := waitEvent[client.MessageEvent](t, jerry, nil).Message; len(m.MentionPids) != 1 || m.MentionPids[0] != jerry.ID() {
		t.Fatalf("mention = %+v", m)
	}

	// Type filter on history.
	imgs, err := conv.QueryMessages(ctx, client.HistoryQuery{Type: client.TypeImage})
	mustNoErr(t, err)
	if len(imgs) != 1 {
		t.Fatalf("image history = %d messages", len(imgs))
	}
	if none, err := conv.QueryMessages(ctx, client.HistoryQuery{Type: 1000}); err != nil || len(none) != 0 {
		t.Fatalf("type 1000 = %v, %v", none, err)
	}
	hist, err := conv.QueryMessages(ctx, client.HistoryQuery{Limit: 3})
	mustNoErr(t, err)
	if len(hist) != 3 || !bytes.Equal(hist[1].Binary, bin) || hist[0].Content != "hello" {
		t.Fatalf("last 3 = %+v", hist)
	}

	// Too large.
	big := client.NewRaw(string(bytes.Repeat([]byte("x"), 6<<10)))
	if _, err := conv.Send(ctx, big); !errors.Is(err, protocol.ErrFrameTooLong) {
		t.Fatalf("6 KB message: %v", err)
	}
	_ = tom
}

func TestClientNodeTransientAndReceipts(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tom, jerry, conv := pair(t, tn)

	tr := client.NewText("typing...")
	tr.Transient = true
	_, err := conv.Send(ctx, tr)
	mustNoErr(t, err)
	if m := waitEvent[client.MessageEvent](t, jerry, nil).Message; !m.Transient {
		t.Fatalf("transient flag lost: %+v", m)
	}
	hist, err := conv.QueryMessages(ctx, client.HistoryQuery{})
	mustNoErr(t, err)
	if len(hist) != 0 {
		t.Fatalf("transient message stored: %+v", hist)
	}

	rc := client.NewText("did you get it?")
	rc.Receipt = true
	sent, err := conv.Send(ctx, rc)
	mustNoErr(t, err)
	got := waitEvent[client.MessageEvent](t, jerry, nil).Message // auto-acked
	del := waitEvent(t, tom, func(e client.ReceiptEvent) bool { return !e.Read })
	if del.MessageID != sent.ID || del.From != jerry.ID() || del.ConversationID != conv.ID() || del.At.IsZero() {
		t.Fatalf("delivery receipt = %+v", del)
	}
	mustNoErr(t, jerry.Conversation(conv.ID()).Read(got))
	rd := waitEvent(t, tom, func(e client.ReceiptEvent) bool { return e.Read })
	if rd.From != jerry.ID() || rd.ConversationID != conv.ID() {
		t.Fatalf("read receipt = %+v", rd)
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		delivered, read, err := conv.MaxRead(ctx)
		if err != nil {
			return err
		}
		if delivered.Before(sent.Timestamp) || read.Before(sent.Timestamp) {
			return fmt.Errorf("max_read = %v / %v", delivered, read)
		}
		return nil
	})
}

func TestClientNodeHistory(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	_, _, conv := pair(t, tn)
	var sent []*client.Message
	for i := range 7 {
		m, err := conv.Send(ctx, client.NewText(fmt.Sprint("m", i)))
		mustNoErr(t, err)
		if len(sent) > 0 && !m.Timestamp.After(sent[len(sent)-1].Timestamp) {
			t.Fatalf("timestamps not strictly increasing: %v then %v", sent[len(sent)-1].Timestamp, m.Timestamp)
		}
		sent = append(sent, m)
	}
	ids := func(ms []*client.Message) string {
		s := ""
		for _, m := range ms {
			for i, x := range sent {
				if x.ID == m.ID {
					s += fmt.Sprint(i)
				}
			}
		}
		return s
	}
	q := func(h client.HistoryQuery) string {
		t.Helper()
		ms, err := conv.QueryMessages(ctx, h)
		mustNoErr(t, err)
		return ids(ms)
	}
	m1, m3, m5 := sent[1], sent[3], sent[5]
	tests := []struct {
		name string
		h    client.HistoryQuery
		want string
	}{
		{"default newest first page, oldest first", client.HistoryQuery{}, "0123456"},
		{"limit", client.HistoryQuery{Limit: 2}, "56"},
		{"before m5", client.HistoryQuery{StartTime: m5.Timestamp, StartMessageID: m5.ID, Limit: 2}, "34"},
		{"before m5 inclusive", client.HistoryQuery{StartTime: m5.Timestamp, StartMessageID: m5.ID, StartClosed: true, Limit: 2}, "45"},
		{"between m5 and m1", client.HistoryQuery{StartTime: m5.Timestamp, StartMessageID: m5.ID, EndTime: m1.Timestamp, EndMessageID: m1.ID, Direction: client.NewToOld}, "234"},
		{"between inclusive end", client.HistoryQuery{StartTime: m5.Timestamp, StartMessageID: m5.ID, EndTime: m3.Timestamp, EndMessageID: m3.ID, EndClosed: true, Direction: client.NewToOld}, "34"},
		{"old to new from m1", client.HistoryQuery{StartTime: m1.Timestamp, StartMessageID: m1.ID, Direction: client.OldToNew, Limit: 2}, "23"},
		{"auto direction m1..m5", client.HistoryQuery{StartTime: m1.Timestamp, StartMessageID: m1.ID, EndTime: m5.Timestamp, EndMessageID: m5.ID}, "234"},
		{"old to new from start", client.HistoryQuery{Direction: client.OldToNew, Limit: 3}, "012"},
		{"start 1 ms", client.HistoryQuery{StartTime: time.UnixMilli(1)}, ""},
		{"future start old to new", client.HistoryQuery{StartTime: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), Direction: client.OldToNew}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := q(tt.h); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}

	it := conv.MessageIterator(3)
	var pages []string
	for {
		page, done, err := it.Next(ctx)
		mustNoErr(t, err)
		pages = append(pages, ids(page))
		if done {
			break
		}
		if len(pages) > 5 {
			t.Fatal("iterator does not end")
		}
	}
	if fmt.Sprint(pages) != "[456 123 0]" {
		t.Fatalf("iterator pages = %v", pages)
	}
	if _, _, err := it.Next(ctx); !errors.Is(err, client.ErrIteratorDone) {
		t.Fatalf("after done: %v", err)
	}

	outsider := tn.login(t, uid("Mary"))
	if _, err := outsider.Conversation(conv.ID()).QueryMessages(ctx, client.HistoryQuery{}); !errors.Is(err, protocol.ErrConversationLogRejected) {
		t.Fatalf("history by non-member: %v", err)
	}
}

func TestClientNodeEditRecall(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	_, jerry, conv := pair(t, tn)
	sent, err := conv.Send(ctx, client.NewText("typo"))
	mustNoErr(t, err)
	waitEvent[client.MessageEvent](t, jerry, nil)
	at, err := conv.UpdateMessage(ctx, sent, client.NewText("fixed"))
	mustNoErr(t, err)
	if at.IsZero() || at.Equal(sent.Timestamp) {
		t.Fatalf("patch time = %v", at)
	}
	pe := waitEvent[client.PatchEvent](t, jerry, nil)
	if pe.Recall || pe.Message.ID != sent.ID {
		t.Fatalf("edit event = %+v", pe)
	}
	if tm, err := pe.Message.Typed(); err != nil || tm.Text != "fixed" {
		t.Fatalf("edited content = %+v, %v", tm, err)
	}
	_, err = conv.RecallMessage(ctx, sent)
	mustNoErr(t, err)
	pe = waitEvent[client.PatchEvent](t, jerry, nil)
	if !pe.Recall {
		t.Fatalf("recall event = %+v", pe)
	}
	hist, err := conv.QueryMessages(ctx, client.HistoryQuery{Limit: 1})
	mustNoErr(t, err)
	if tm, err := hist[0].Typed(); err != nil || tm.Type != client.TypeRecalled || hist[0].PatchedAt.IsZero() {
		t.Fatalf("recalled history item = %+v (%v)", hist[0], err)
	}
	if _, err := jerry.Conversation(conv.ID()).RecallMessage(ctx, sent); !errors.Is(err, protocol.ErrMessageOwnershipRequired) {
		t.Fatalf("recall by another member: %v", err)
	}
}

func TestClientNodeUnreadAndRead(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tomID, jerryID := uid("Tom"), uid("Jerry")
	tom := tn.login(t, tomID)
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}, Unique: true})
	mustNoErr(t, err)
	var last *client.Message
	for i := range 3 {
		m := client.NewText(fmt.Sprint("offline ", i))
		if i == 2 {
			m.MentionPids = []string{jerryID}
		}
		last, err = conv.Send(ctx, m)
		mustNoErr(t, err)
	}
	// Jerry logs in on two devices; each gets the unread summary.
	jerryA := tn.login(t, jerryID)
	jerryB := tn.login(t, jerryID)
	for _, cl := range []*client.IMClient{jerryA, jerryB} {
		u := waitEvent[client.UnreadEvent](t, cl, nil)
		if len(u.Conversations) != 1 {
			t.Fatalf("unread = %+v", u)
		}
		uc := u.Conversations[0]
		if uc.ConversationID != conv.ID() || uc.Count != 3 || !uc.Mentioned || uc.LastMessage == nil || uc.LastMessage.ID != last.ID {
			t.Fatalf("unread tuple = %+v (last %+v)", uc, uc.LastMessage)
		}
	}
	// Device B reads: device A is told the count is now 0.
	mustNoErr(t, jerryB.Conversation(conv.ID()).Read(last))
	u := waitEvent(t, jerryA, func(e client.UnreadEvent) bool { return len(e.Conversations) == 1 })
	if uc := u.Conversations[0]; uc.Count != 0 || uc.Mentioned {
		t.Fatalf("unread after read = %+v", uc)
	}
}

func TestClientNodeQueries(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tomID := uid("Tom")
	tom := tn.login(t, tomID)
	mk := func(name string, attrs map[string]any, members ...string) *client.Conversation {
		c, err := tom.CreateConversation(ctx, client.CreateOptions{Name: name, Attributes: attrs, Members: members})
		mustNoErr(t, err)
		return c
	}
	tag := uid("q")
	a := mk("教育 A", map[string]any{"tag": tag, "attr": map[string]any{"type": "private"}, "age": 10}, uid("x"))
	b := mk("Sport B", map[string]any{"tag": tag, "attr": map[string]any{"type": "public"}, "age": 20}, uid("y"), uid("z"))
	c := mk("sport c", map[string]any{"tag": tag, "age": 30})
	_, err := b.Send(ctx, client.NewText("last in b"))
	mustNoErr(t, err)
	before := time.Now().Add(-time.Hour)

	names := func(q *client.ConversationQuery) string {
		t.Helper()
		list, err := q.Find(ctx)
		mustNoErr(t, err)
		s := ""
		for _, cv := range list {
			switch cv.ID() {
			case a.ID():
				s += "a"
			case b.ID():
				s += "b"
			case c.ID():
				s += "c"
			default:
				s += "?"
			}
		}
		return s
	}
	base := func() *client.ConversationQuery { return tom.Query().EqualTo("tag", tag).Ascending("age") }
	tests := []struct {
		name string
		q    *client.ConversationQuery
		want string
	}{
		{"equal dot path", base().EqualTo("attr.type", "private"), "a"},
		{"not equal", base().NotEqualTo("age", 20), "ac"},
		{"less than", base().LessThan("age", 20), "a"},
		{"range", base().GreaterThanOrEqualTo("age", 20).LessThanOrEqualTo("age", 30), "bc"},
		{"created after", base().GreaterThan("createdAt", before), "abc"},
		{"created before epoch", base().LessThan("createdAt", time.UnixMilli(0)), ""},
		{"contained in", base().ContainedIn("age", 10, 30), "ac"},
		{"not contained in", base().NotContainedIn("age", 10, 30), "b"},
		{"members contain", base().ContainedIn("m", tomID), "abc"},
		{"size", base().SizeEqualTo("m", 3), "b"},
		{"exists", base().Exists("attr"), "ab"},
		{"does not exist", base().DoesNotExist("attr"), "c"},
		{"exists lm", base().Exists("lm"), "b"},
		{"fake key", base().Exists("fakeKey"), ""},
		{"starts with", base().StartsWith("name", "教育"), "a"},
		{"contains case sensitive", base().Contains("name", "port"), "bc"},
		{"matches case insensitive", base().Matches("name", "^sport", "i"), "bc"},
		{"matches case sensitive", base().Matches("name", "^sport", ""), "c"},
		{"or", client.Or(base().EqualTo("age", 10), base().EqualTo("age", 30)).Ascending("age"), "ac"},
		{"and", client.And(base().EqualTo("age", 10), base().EqualTo("attr.type", "public")), ""},
		{"descending", tom.Query().EqualTo("tag", tag).Descending("age"), "cba"},
		{"sort by createdAt desc", tom.Query().EqualTo("tag", tag).Descending("createdAt"), "cba"},
		{"limit skip", base().Skip(1).Limit(1), "b"},
		{"limit 0", base().Limit(0), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := names(tt.q); got != tt.want {
				w, _ := tt.q.Where()
				t.Fatalf("%s: got %q, want %q", w, got, tt.want)
			}
		})
	}

	full, err := base().EqualTo("age", 20).WithLastMessage(true).First(ctx)
	mustNoErr(t, err)
	if fi := full.Info(); len(fi.Members) != 3 || fi.LastMessage == nil || fi.LastMessage.From != tomID || fi.LastMessageAt.IsZero() {
		t.Fatalf("with last message = %+v (%+v)", fi, fi.LastMessage)
	}
	compact, err := base().EqualTo("age", 20).Compact(true).First(ctx)
	mustNoErr(t, err)
	if ci := compact.Info(); len(ci.Members) != 0 || ci.LastMessage != nil {
		t.Fatalf("compact = %+v", ci)
	}
	// The default query is "conversations containing me".
	mine, err := tom.Query().Limit(100).Find(ctx)
	mustNoErr(t, err)
	if len(mine) < 3 {
		t.Fatalf("default query found %d", len(mine))
	}
}

func TestClientNodeReconnect(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tom, jerry, conv := pair(t, tn)
	jerry.Conn().DropConnection()
	waitEvent[client.DisconnectEvent](t, jerry, nil)
	waitEvent[client.ReconnectEvent](t, jerry, nil)
	_, err := conv.Send(ctx, client.NewText("after reconnect"))
	mustNoErr(t, err)
	if m := waitEvent[client.MessageEvent](t, jerry, nil).Message; m.From != tom.ID() {
		t.Fatalf("after reconnect got %+v", m)
	}
	ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := jerry.Conversation(conv.ID()).Send(ctx2, client.NewText("reply")); err != nil {
		t.Fatal(err)
	}
}
