package client_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/protocol"
)

func membership(kind client.MembershipKind, cid string) func(client.MembershipEvent) bool {
	return func(e client.MembershipEvent) bool { return e.Kind == kind && e.ConversationID == cid }
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestClientNodeTomAndJerry is the guide's first chapter: a 1:1 chat.
func TestClientNodeTomAndJerry(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tomID, jerryID := uid("Tom"), uid("Jerry")
	tom, jerry := tn.login(t, tomID), tn.login(t, jerryID)

	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}, Name: "Tom & Jerry", Unique: true})
	mustNoErr(t, err)
	info := conv.Info()
	if info.CreatedAt.IsZero() || !sameSet(info.Members, []string{tomID, jerryID}) {
		t.Fatalf("created = %+v", info)
	}
	for _, cl := range []*client.IMClient{tom, jerry} {
		inv := waitEvent(t, cl, membership(client.Invited, conv.ID()))
		if inv.By != tomID {
			t.Fatalf("%s invited by %q", cl.ID(), inv.By)
		}
		mj := waitEvent(t, cl, membership(client.MembersJoined, conv.ID()))
		if !sameSet(mj.Members, []string{tomID, jerryID}) {
			t.Fatalf("%s membersjoined = %v", cl.ID(), mj.Members)
		}
	}

	sent, err := conv.Send(ctx, client.NewText("Jerry，起床了！"))
	mustNoErr(t, err)
	if sent.ID == "" || sent.Timestamp.IsZero() {
		t.Fatalf("sent = %+v", sent)
	}
	got := waitEvent[client.MessageEvent](t, jerry, nil).Message
	tm, err := got.Typed()
	mustNoErr(t, err)
	if got.ID != sent.ID || got.From != tomID || got.ConversationID != conv.ID() || !got.Timestamp.Equal(sent.Timestamp) ||
		tm.Type != client.TypeText || tm.Text != "Jerry，起床了！" {
		t.Fatalf("received %+v (%+v), sent %+v", got, tm, sent)
	}

	// The same unique conversation comes back for the same member set,
	// whatever the name; unique=false always creates a new one.
	again, err := jerry.CreateConversation(ctx, client.CreateOptions{Members: []string{tomID}, Name: "other", Unique: true})
	mustNoErr(t, err)
	if again.ID() != conv.ID() {
		t.Fatalf("unique conversation: %s != %s", again.ID(), conv.ID())
	}
	fresh, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID}})
	mustNoErr(t, err)
	if fresh.ID() == conv.ID() {
		t.Fatal("unique=false returned the existing conversation")
	}

	fetched, err := jerry.GetConversation(ctx, conv.ID())
	mustNoErr(t, err)
	fi := fetched.Info()
	if fi.Name != "Tom & Jerry" || fi.Creator != tomID || !sameSet(fi.Members, []string{tomID, jerryID}) ||
		!fi.Unique || fi.LastMessageAt.IsZero() {
		t.Fatalf("fetched = %+v", fi)
	}
	if _, err := jerry.GetConversation(ctx, "5a5d7433c3422b31ed845e76"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("unknown conversation: %v", err)
	}
	n, err := conv.Count(ctx)
	mustNoErr(t, err)
	if n != 2 {
		t.Fatalf("count = %d", n)
	}
}

// TestClientNodeMembershipTable checks every row of the guide's
// Tom/Jerry/Mary/William event table.
func TestClientNodeMembershipTable(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	ids := map[string]string{}
	cls := map[string]*client.IMClient{}
	for _, n := range []string{"Tom", "Jerry", "Mary", "William"} {
		ids[n] = uid(n)
		cls[n] = tn.login(t, ids[n])
	}
	tom, jerry, mary, william := cls["Tom"], cls["Jerry"], cls["Mary"], cls["William"]
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{ids["Jerry"]}, Name: "group", Unique: true})
	mustNoErr(t, err)
	cid := conv.ID()
	for _, cl := range []*client.IMClient{tom, jerry} {
		waitEvent(t, cl, membership(client.MembersJoined, cid))
	}

	// Tom adds Mary: Mary is invited; everybody sees membersjoined [Mary].
	res, err := conv.Add(ctx, []string{ids["Mary"]})
	mustNoErr(t, err)
	if !slices.Equal(res.Allowed, []string{ids["Mary"]}) || len(res.Failed) != 0 {
		t.Fatalf("add = %+v", res)
	}
	if inv := waitEvent(t, mary, membership(client.Invited, cid)); inv.By != ids["Tom"] {
		t.Fatalf("mary invited by %q", inv.By)
	}
	for _, cl := range []*client.IMClient{tom, jerry, mary} {
		mj := waitEvent(t, cl, membership(client.MembersJoined, cid))
		if !slices.Equal(mj.Members, []string{ids["Mary"]}) || mj.By != ids["Tom"] {
			t.Fatalf("%s membersjoined = %+v", cl.ID(), mj)
		}
	}
	if !sameSet(conv.Info().Members, []string{ids["Tom"], ids["Jerry"], ids["Mary"]}) {
		t.Fatalf("local members after add = %v", conv.Info().Members)
	}

	// Tom removes Mary: Mary is kicked; the others see membersleft [Mary].
	res, err = conv.Remove(ctx, []string{ids["Mary"]})
	mustNoErr(t, err)
	if !slices.Equal(res.Allowed, []string{ids["Mary"]}) {
		t.Fatalf("remove = %+v", res)
	}
	if k := waitEvent(t, mary, membership(client.Kicked, cid)); k.By != ids["Tom"] {
		t.Fatalf("mary kicked by %q", k.By)
	}
	for _, cl := range []*client.IMClient{tom, jerry} {
		ml := waitEvent(t, cl, membership(client.MembersLeft, cid))
		if !slices.Equal(ml.Members, []string{ids["Mary"]}) {
			t.Fatalf("%s membersleft = %+v", cl.ID(), ml)
		}
	}

	// William joins by himself: the others see membersjoined [William].
	wconv, err := william.GetConversation(ctx, cid)
	mustNoErr(t, err)
	mustNoErr(t, wconv.Join(ctx))
	waitEvent(t, william, membership(client.Invited, cid))
	for _, cl := range []*client.IMClient{tom, jerry} {
		mj := waitEvent(t, cl, membership(client.MembersJoined, cid))
		if !slices.Equal(mj.Members, []string{ids["William"]}) || mj.By != ids["William"] {
			t.Fatalf("%s membersjoined = %+v", cl.ID(), mj)
		}
	}

	// William quits: he gets kicked (by himself); the others membersleft.
	mustNoErr(t, wconv.Quit(ctx))
	if k := waitEvent(t, william, membership(client.Kicked, cid)); k.By != ids["William"] {
		t.Fatalf("william kicked by %q", k.By)
	}
	for _, cl := range []*client.IMClient{tom, jerry} {
		waitEvent(t, cl, membership(client.MembersLeft, cid))
	}

	// The owner can neither quit nor be removed; the other ids still go.
	var se *client.Error
	if err := conv.Quit(ctx); !errors.As(err, &se) || se.Code != 4324 || se.Reason != "CONVERSATION_NEED_OWNER" {
		t.Fatalf("owner quit: %v", err)
	}
	jconv := jerry.Conversation(cid)
	res, err = jconv.Remove(ctx, []string{ids["Tom"]})
	if err == nil && (len(res.Failed) != 1 || res.Failed[0].Code != 4324 || !slices.Equal(res.Failed[0].Pids, []string{ids["Tom"]})) {
		t.Fatalf("remove owner by a member = %+v", res)
	}
	res, err = conv.Remove(ctx, []string{ids["Tom"], ids["Jerry"]})
	mustNoErr(t, err)
	if !slices.Equal(res.Allowed, []string{ids["Jerry"]}) || len(res.Failed) != 1 || res.Failed[0].Reason != "CONVERSATION_NEED_OWNER" ||
		!slices.Equal(res.Failed[0].Pids, []string{ids["Tom"]}) {
		t.Fatalf("remove [owner, jerry] = %+v", res)
	}
	waitEvent(t, jerry, membership(client.Kicked, cid))

	// A non-member cannot send.
	_, err = mary.Conversation(cid).Send(ctx, client.NewText("let me in"))
	if !errors.As(err, &se) || se.Code != 4401 || se.Reason != "INVALID_MESSAGING_TARGET" {
		t.Fatalf("non-member send: %v", err)
	}
}

func TestClientNodeChatRoomAndTemporary(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tomID, jerryID := uid("Tom"), uid("Jerry")
	tom, jerry := tn.login(t, tomID), tn.login(t, jerryID)

	room, err := tom.CreateChatRoom(ctx, "lobby", map[string]any{"topic": "cats"})
	mustNoErr(t, err)
	jroom, err := jerry.GetConversation(ctx, room.ID())
	mustNoErr(t, err)
	if ji := jroom.Info(); !ji.Transient || ji.Name != "lobby" || ji.Attributes["topic"] != "cats" {
		t.Fatalf("room = %+v", ji)
	}
	mustNoErr(t, jroom.Join(ctx))
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		n, err := room.Count(ctx)
		if err != nil {
			return err
		}
		if n != 2 {
			return errors.New("room count != 2")
		}
		return nil
	})
	if _, err := room.Send(ctx, client.NewText("hello room")); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent[client.MessageEvent](t, jerry, nil).Message; m.ConversationID != room.ID() {
		t.Fatalf("room message = %+v", m)
	}

	tmp, err := tom.CreateTemporaryConversation(ctx, []string{jerryID}, time.Hour)
	mustNoErr(t, err)
	if ti := tmp.Info(); !ti.Temporary || ti.TTL != time.Hour || len(tmp.ID()) < 6 || tmp.ID()[:5] != "_tmp:" {
		t.Fatalf("temporary = %+v", ti)
	}
	again, err := tom.CreateTemporaryConversation(ctx, []string{jerryID}, time.Hour)
	mustNoErr(t, err)
	if again.ID() != tmp.ID() {
		t.Fatalf("temporary conversation not unique by members: %s vs %s", again.ID(), tmp.ID())
	}
	both, err := jerry.GetConversations(ctx, room.ID(), tmp.ID(), "5a5d7433c3422b31ed845e76")
	mustNoErr(t, err)
	if len(both) != 2 {
		t.Fatalf("GetConversations found %d, want the room and the temporary conversation", len(both))
	}
	jtmp, err := jerry.GetConversation(ctx, tmp.ID())
	mustNoErr(t, err)
	if ji := jtmp.Info(); ji.TTL != time.Hour || !sameSet(ji.Members, []string{tomID, jerryID}) {
		t.Fatalf("fetched temporary = %+v", ji)
	}
	// Not returned by where queries.
	list, err := tom.Query().EqualTo("objectId", tmp.ID()).Find(ctx)
	mustNoErr(t, err)
	if len(list) != 0 {
		t.Fatalf("where query returned the temporary conversation: %v", list)
	}

	short, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID, uid("x")}, Temporary: true, TTL: time.Second})
	mustNoErr(t, err)
	_, err = short.Send(ctx, client.NewText("quick"))
	mustNoErr(t, err)
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, err := short.Send(ctx, client.NewText("too late?"))
		if errors.Is(err, protocol.ErrConversationNotFound) {
			return nil
		}
		return errors.New("temporary conversation still accepts messages")
	})
	if _, err := jerry.GetConversation(ctx, short.ID()); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("expired temporary conversation fetched: %v", err)
	}
}

func TestClientNodeAttributes(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tomID, jerryID := uid("Tom"), uid("Jerry")
	tom, jerry := tn.login(t, tomID), tn.login(t, jerryID)
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{
		Members: []string{jerryID}, Name: "猫和老鼠", Unique: true,
		Attributes: map[string]any{"attr": map[string]any{"type": "private", "pinned": true}, "level": 1},
	})
	mustNoErr(t, err)
	waitEvent(t, jerry, membership(client.MembersJoined, conv.ID()))

	mod, err := conv.Update(ctx, map[string]any{"name": "聪明的喵星人", "attr.pinned": false, "level": client.OpIncrement(2)})
	mustNoErr(t, err)
	if mod["name"] != "聪明的喵星人" || mod["attr.pinned"] != false || mod["level"] != float64(3) {
		t.Fatalf("attrModified = %v", mod)
	}
	up := waitEvent[client.InfoUpdatedEvent](t, jerry, nil)
	if up.ConversationID != conv.ID() || up.By != tomID || up.Attributes["name"] != "聪明的喵星人" {
		t.Fatalf("updated event = %+v", up)
	}
	_, err = conv.Update(ctx, map[string]any{"attr.type": client.OpDelete(), "attr.tags": client.OpAdd("a", "b")})
	mustNoErr(t, err)
	jc, err := jerry.GetConversation(ctx, conv.ID())
	mustNoErr(t, err)
	info := jc.Info()
	if info.Name != "聪明的喵星人" {
		t.Fatalf("name = %q", info.Name)
	}
	if v, _ := info.Attr("attr.pinned"); v != false {
		t.Fatalf("attr.pinned = %v", v)
	}
	if _, ok := info.Attr("attr.type"); ok {
		t.Fatal("attr.type survived Delete")
	}
	if v, _ := info.Attr("attr.tags"); !slices.Equal(toStrings(v), []string{"a", "b"}) {
		t.Fatalf("attr.tags = %v", v)
	}
	if v, _ := info.Attr("level"); v != float64(3) {
		t.Fatalf("level = %v", v)
	}
	if _, err := tom.Conversation("5a5d7433c3422b31ed845e76").Update(ctx, map[string]any{"name": "x"}); !errors.Is(err, protocol.ErrConversationNotFound) {
		t.Fatalf("update unknown: %v", err)
	}
	outsider := tn.login(t, uid("Mary"))
	if _, err := outsider.Conversation(conv.ID()).Update(ctx, map[string]any{"name": "hijack"}); !errors.Is(err, protocol.ErrConversationUpdateRejected) {
		t.Fatalf("update by non-member: %v", err)
	}
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

func TestClientNodeModeration(t *testing.T) {
	tn := startNode(t)
	ctx := testCtx(t)
	tomID, jerryID, maryID := uid("Tom"), uid("Jerry"), uid("Mary")
	tom, jerry, mary := tn.login(t, tomID), tn.login(t, jerryID), tn.login(t, maryID)
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{jerryID, maryID}, Unique: true})
	mustNoErr(t, err)
	cid := conv.ID()
	waitEvent(t, mary, membership(client.MembersJoined, cid))

	mustNoErr(t, conv.Mute(ctx))
	mustNoErr(t, conv.Unmute(ctx))

	mustNoErr(t, conv.UpdateMemberRole(ctx, jerryID, client.RoleManager))
	mi := waitEvent[client.MemberInfoUpdatedEvent](t, jerry, nil)
	if mi.Member != jerryID || mi.Role != client.RoleManager || mi.By != tomID {
		t.Fatalf("member info event = %+v", mi)
	}
	if err := jerry.Conversation(cid).UpdateMemberRole(ctx, jerryID, client.RoleMember); !errors.Is(err, protocol.ErrOperationUnauthorized) {
		t.Fatalf("self role change: %v", err)
	}
	// A manager silenced by the owner cannot lift its own silence.
	_, err = conv.MuteMembers(ctx, []string{jerryID})
	mustNoErr(t, err)
	waitEvent(t, tom, func(e client.MembershipEvent) bool {
		return e.Kind == client.MembersMuted && slices.Equal(e.Members, []string{jerryID})
	})
	res, err := jerry.Conversation(cid).UnmuteMembers(ctx, []string{jerryID})
	mustNoErr(t, err)
	if len(res.Allowed) != 0 || len(res.Failed) != 1 || !errors.Is(res.Failed[0], protocol.ErrOperationUnauthorized) ||
		!slices.Equal(res.Failed[0].Pids, []string{jerryID}) {
		t.Fatalf("a silenced manager unsilenced itself: %+v", res)
	}
	if _, err := jerry.Conversation(cid).Send(ctx, client.NewText("still silenced?")); !errors.Is(err, protocol.ErrSilenced) {
		t.Fatalf("send by the silenced manager: %v", err)
	}
	_, err = conv.UnmuteMembers(ctx, []string{jerryID})
	mustNoErr(t, err)
	waitEvent(t, tom, func(e client.MembershipEvent) bool {
		return e.Kind == client.MembersUnmuted && slices.Equal(e.Members, []string{jerryID})
	})

	res, err = conv.MuteMembers(ctx, []string{maryID})
	mustNoErr(t, err)
	if !slices.Equal(res.Allowed, []string{maryID}) {
		t.Fatalf("mute members = %+v", res)
	}
	mm := waitEvent(t, tom, membership(client.MembersMuted, cid))
	if !slices.Equal(mm.Members, []string{maryID}) || mm.By != tomID {
		t.Fatalf("membersmuted = %+v", mm)
	}
	if e := waitEvent(t, mary, membership(client.Muted, cid)); e.By != tomID {
		t.Fatalf("muted = %+v", e)
	}
	mconv := mary.Conversation(cid)
	if _, err := mconv.Send(ctx, client.NewText("can I talk?")); !errors.Is(err, protocol.ErrSilenced) {
		t.Fatalf("silenced send: %v", err)
	}
	if self, _, err := mconv.MutedMembers(ctx, 10, ""); err != nil || !slices.Equal(self, []string{maryID}) {
		t.Fatalf("muted list seen by the muted member = %v, %v", self, err)
	}
	if res, err := mconv.UnmuteMembers(ctx, []string{maryID}); err == nil && len(res.Failed) == 0 {
		t.Fatalf("a silenced member unsilenced itself: %+v", res)
	}
	muted, _, err := conv.MutedMembers(ctx, 10, "")
	mustNoErr(t, err)
	if !slices.Equal(muted, []string{maryID}) {
		t.Fatalf("muted members = %v", muted)
	}
	_, err = conv.UnmuteMembers(ctx, []string{maryID})
	mustNoErr(t, err)
	waitEvent(t, tom, membership(client.MembersUnmuted, cid))
	// The affected member gets both the singular and the plural push.
	waitEvent(t, mary, membership(client.Unmuted, cid))
	waitEvent(t, mary, membership(client.MembersUnmuted, cid))
	_, err = mconv.Send(ctx, client.NewText("thanks"))
	mustNoErr(t, err)

	res, err = conv.BlockMembers(ctx, []string{maryID})
	mustNoErr(t, err)
	if !slices.Equal(res.Allowed, []string{maryID}) {
		t.Fatalf("block = %+v", res)
	}
	waitEvent(t, tom, membership(client.MembersBlocked, cid))
	waitEvent(t, tom, membership(client.MembersLeft, cid))
	waitEvent(t, mary, membership(client.Blocked, cid))
	waitEvent(t, mary, membership(client.Kicked, cid))
	if res, err := mconv.UnblockMembers(ctx, []string{maryID}); err == nil && len(res.Failed) == 0 {
		t.Fatalf("a blocked member unblocked itself: %+v", res)
	}
	blocked, _, err := conv.BlockedMembers(ctx, 10, "")
	mustNoErr(t, err)
	if !slices.Equal(blocked, []string{maryID}) {
		t.Fatalf("blocked = %v", blocked)
	}
	if err := mconv.Join(ctx); !errors.Is(err, protocol.ErrBlockedByConv) {
		t.Fatalf("blocked join: %v", err)
	}
	_, err = conv.UnblockMembers(ctx, []string{maryID})
	mustNoErr(t, err)
	waitEvent(t, mary, membership(client.Unblocked, cid))
	mustNoErr(t, mconv.Join(ctx))
}
