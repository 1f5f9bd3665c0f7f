package cluster_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/test/harness"
)

// TestClusterConversationAcrossThreeNodes: members of one conversation on
// three different nodes exchange messages and get every membership event;
// a chat room spans the nodes too.
func TestClusterConversationAcrossThreeNodes(t *testing.T) {
	c := harness.Start(t, 3, harness.Options{})
	conversationScenario(t, c, 4)
}

// TestClusterConversationAcrossFiveNodes: the same with five nodes and a
// member on each.
func TestClusterConversationAcrossFiveNodes(t *testing.T) {
	c := harness.Start(t, 5, harness.Options{})
	conversationScenario(t, c, 5)
}

// conversationScenario places n users round-robin on the cluster's nodes
// (n >= 4): users[0] creates a conversation with users[1] and users[4:],
// adds users[2], users[3] joins by himself; messages flow from every
// member; users[2] is removed and users[3] quits; then a chat room.
func conversationScenario(t *testing.T, c *harness.Cluster, n int) {
	ctx := testCtx(t)
	nodes := c.Running()
	names := []string{"Tom", "Jerry", "Mary", "William", "Bob", "Alice", "Eve"}
	users := make([]*user, n)
	for i := range users {
		home := nodes[i%len(nodes)]
		users[i] = connect(t, c, home, home, names[i%len(names)])
	}
	owner, first, added, joiner, extra := users[0], users[1], users[2], users[3], users[4:]
	expectConnections(t, users)

	// Create: every initial member gets invited + membersjoined(all).
	initial := append([]*user{owner, first}, extra...)
	conv, err := owner.cl.CreateConversation(ctx, client.CreateOptions{Members: ids(initial[1:]...), Name: "across nodes", Unique: true})
	mustNoErr(t, err)
	cid := conv.ID()
	if !sameSet(conv.Info().Members, ids(initial...)) {
		t.Fatalf("created members = %v, want %v", conv.Info().Members, ids(initial...))
	}
	for _, u := range initial {
		if e := take(t, u, "invited", membership(client.Invited, cid)); e.By != owner.id {
			t.Fatalf("%s invited by %q, want %q", u.name, e.By, owner.id)
		}
		if e := take(t, u, "membersjoined(all)", membership(client.MembersJoined, cid)); !sameSet(e.Members, ids(initial...)) || e.By != owner.id {
			t.Fatalf("%s membersjoined = %+v, want %v by %s", u.name, e, ids(initial...), owner.id)
		}
	}
	members := slices.Clone(initial)
	exchange(t, conv, members, "after create")

	// Add: the added member is invited, everybody sees membersjoined([added]).
	res, err := conv.Add(ctx, []string{added.id})
	mustNoErr(t, err)
	if !slices.Equal(res.Allowed, []string{added.id}) || len(res.Failed) != 0 {
		t.Fatalf("add = %+v", res)
	}
	if e := take(t, added, "invited", membership(client.Invited, cid)); e.By != owner.id {
		t.Fatalf("%s invited by %q", added.name, e.By)
	}
	members = append(members, added)
	expectMembers(t, members, client.MembersJoined, cid, added.id, owner.id)

	// Join: the joiner is invited by himself; everybody sees membersjoined([joiner]).
	jconv, err := joiner.cl.GetConversation(ctx, cid)
	mustNoErr(t, err)
	mustNoErr(t, jconv.Join(ctx))
	if e := take(t, joiner, "invited", membership(client.Invited, cid)); e.By != joiner.id {
		t.Fatalf("%s invited by %q after joining", joiner.name, e.By)
	}
	members = append(members, joiner)
	expectMembers(t, members, client.MembersJoined, cid, joiner.id, joiner.id)
	exchange(t, conv, members, "after add and join")

	// Fetching from every node gives the same member list.
	for _, u := range members {
		got, err := u.cl.GetConversation(ctx, cid)
		mustNoErr(t, err)
		if !sameSet(got.Info().Members, ids(members...)) {
			t.Fatalf("%s on %s fetched members %v, want %v", u.name, u.home.ID(), got.Info().Members, ids(members...))
		}
	}

	// Remove: the removed member is kicked; the others see membersleft([added]).
	res, err = conv.Remove(ctx, []string{added.id})
	mustNoErr(t, err)
	if !slices.Equal(res.Allowed, []string{added.id}) {
		t.Fatalf("remove = %+v", res)
	}
	if e := take(t, added, "kicked", membership(client.Kicked, cid)); e.By != owner.id {
		t.Fatalf("%s kicked by %q", added.name, e.By)
	}
	members = slices.DeleteFunc(members, func(u *user) bool { return u == added })
	expectMembers(t, members, client.MembersLeft, cid, added.id, owner.id)

	// Quit: the leaver is kicked by himself; the others see membersleft([joiner]).
	mustNoErr(t, jconv.Quit(ctx))
	if e := take(t, joiner, "kicked", membership(client.Kicked, cid)); e.By != joiner.id {
		t.Fatalf("%s kicked by %q after quitting", joiner.name, e.By)
	}
	members = slices.DeleteFunc(members, func(u *user) bool { return u == joiner })
	expectMembers(t, members, client.MembersLeft, cid, joiner.id, joiner.id)
	last := exchange(t, conv, members, "after remove and quit")

	// The two who left get none of the later messages, and cannot send.
	for _, u := range []*user{added, joiner} {
		for _, m := range last {
			if _, ok := u.in.takeFirst(func(ev client.Event) bool {
				e, ok := ev.(client.MessageEvent)
				return ok && e.Message.ID == m.ID
			}); ok {
				t.Fatalf("%s got message %s sent after it left", u.name, m.ID)
			}
		}
		if _, err := u.cl.Conversation(cid).Send(ctx, client.NewText("let me back")); err == nil {
			t.Fatalf("%s sent to a conversation it left", u.name)
		}
	}

	chatRoomScenario(t, users)
}

// exchange sends one message from every member (each through a handle of
// its own session) and checks that every other member receives each one
// with the id, timestamp, sender and content of the ack. It returns the
// acknowledged messages.
func exchange(t *testing.T, conv *client.Conversation, members []*user, step string) []*client.Message {
	t.Helper()
	ctx := testCtx(t)
	sent := make([]*client.Message, 0, len(members))
	for _, u := range members {
		m, err := u.cl.Conversation(conv.ID()).Send(ctx, client.NewText(fmt.Sprintf("%s from %s", step, u.name)))
		if err != nil {
			t.Fatalf("%s: %s (on %s) send: %v", step, u.name, u.home.ID(), err)
		}
		if m.ID == "" || m.Timestamp.IsZero() {
			t.Fatalf("%s: ack without id or timestamp: %+v", step, m)
		}
		sent = append(sent, m)
	}
	for _, m := range sent {
		for _, u := range members {
			if u.id == m.From {
				continue
			}
			got := take(t, u, "message "+m.ID, messageID(m.ID)).Message
			if got.From != m.From || got.ConversationID != conv.ID() || !got.Timestamp.Equal(m.Timestamp) {
				t.Fatalf("%s: %s received %+v, sent %+v", step, u.name, got, m)
			}
			tm, err := got.Typed()
			mustNoErr(t, err)
			if want := fmt.Sprintf("%s from %s", step, nameOf(members, m.From)); tm.Text != want {
				t.Fatalf("%s: %s received text %q, want %q", step, u.name, tm.Text, want)
			}
		}
	}
	return sent
}

func nameOf(users []*user, id string) string {
	for _, u := range users {
		if u.id == id {
			return u.name
		}
	}
	return id
}

// expectMembers waits for kind(members=[who], by) on every user of to.
func expectMembers(t *testing.T, to []*user, kind client.MembershipKind, cid, who, by string) {
	t.Helper()
	for _, u := range to {
		e := take(t, u, fmt.Sprintf("%s([%s])", kind, who), func(e client.MembershipEvent) bool {
			return e.Kind == kind && e.ConversationID == cid && slices.Contains(e.Members, who)
		})
		if !slices.Equal(e.Members, []string{who}) || e.By != by {
			t.Fatalf("%s %s = %+v, want [%s] by %s", u.name, kind, e, who, by)
		}
	}
}

// chatRoomScenario: users[0] creates a room, the others (on other nodes)
// join it; everybody receives everybody's messages; a member that left the
// room is no longer counted.
func chatRoomScenario(t *testing.T, users []*user) {
	t.Helper()
	ctx := testCtx(t)
	owner := users[0]
	room, err := owner.cl.CreateChatRoom(ctx, "lobby", map[string]any{"topic": "cluster"})
	mustNoErr(t, err)
	for _, u := range users[1:] {
		r, err := u.cl.GetConversation(ctx, room.ID())
		mustNoErr(t, err)
		if ri := r.Info(); !ri.Transient || ri.Name != "lobby" {
			t.Fatalf("%s on %s fetched room %+v", u.name, u.home.ID(), ri)
		}
		mustNoErr(t, r.Join(ctx))
	}
	for _, u := range users {
		harness.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			n, err := u.cl.Conversation(room.ID()).Count(ctx)
			if err != nil {
				return err
			}
			if n != len(users) {
				return fmt.Errorf("%s on %s counts %d in the room, want %d", u.name, u.home.ID(), n, len(users))
			}
			return nil
		})
	}
	exchange(t, room, users, "room")

	leaver := users[len(users)-1]
	mustNoErr(t, leaver.cl.Conversation(room.ID()).Quit(ctx))
	harness.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		n, err := owner.cl.Conversation(room.ID()).Count(ctx)
		if err != nil {
			return err
		}
		if n != len(users)-1 {
			return errors.New("room count did not drop after a member left")
		}
		return nil
	})
	exchange(t, room, users[:len(users)-1], "room after quit")
}

// expectConnections checks that the users really are spread: every node
// holds at least the connections of the users homed on it.
func expectConnections(t *testing.T, users []*user) {
	t.Helper()
	want := map[*harness.Node]int{}
	for _, u := range users {
		want[u.home]++
	}
	for nd, n := range want {
		harness.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			st, err := nd.Admin().Node(t.Context())
			if err != nil {
				return err
			}
			if st.Connections < n {
				return fmt.Errorf("%s has %d client connections, want at least %d", nd.ID(), st.Connections, n)
			}
			return nil
		})
	}
}
