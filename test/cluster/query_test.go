package cluster_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/test/harness"
)

// TestClusterQueriesAndHistoryAgreeAcrossNodes: the default conversation
// query, a where query with sort/skip/limit, and history (one page and
// paged) give the same answers on every node, and those answers are what
// was written.
func TestClusterQueriesAndHistoryAgreeAcrossNodes(t *testing.T) {
	queryScenario(t, harness.Start(t, 3, harness.Options{}))
}

// queryScenario runs the checks of TestClusterQueriesAndHistoryAgreeAcrossNodes
// with one reader per running node of c.
func queryScenario(t *testing.T, c *harness.Cluster) {
	ctx := testCtx(t)
	nodes := c.Running()
	owner := connect(t, c, nodes[0], nodes[0], "Owner")
	readers := make([]*user, len(nodes))
	for i, nd := range nodes {
		readers[i] = connect(t, c, nd, nd, fmt.Sprintf("Reader%d", i))
	}
	run := uid("run")

	// Six conversations, each with every reader; idx 0..5.
	const convs = 6
	created := make([]*client.Conversation, convs)
	for i := range convs {
		conv, err := owner.cl.CreateConversation(ctx, client.CreateOptions{
			Members: ids(readers...), Name: fmt.Sprintf("conv %d", i), Unique: false,
			Attributes: map[string]any{"run": run, "idx": i},
		})
		mustNoErr(t, err)
		created[i] = conv
		afterMillisecond(t, conv.Info().CreatedAt) // distinct createdAt for the sort below
	}

	// History: 30 messages into conversation 0 from all three nodes, then
	// one message each into conversations 5, 3 and 1 (in that order, so
	// the default sort -lm puts them first).
	var acked []*client.Message
	for i := range 30 {
		u := readers[i%len(readers)]
		m, err := u.cl.Conversation(created[0].ID()).Send(ctx, client.NewText(fmt.Sprintf("history %02d", i)))
		mustNoErr(t, err)
		acked = append(acked, m)
	}
	last := acked[len(acked)-1]
	for _, i := range []int{5, 3, 1} {
		// lm has millisecond resolution: no ties in the -lm order.
		afterMillisecond(t, last.Timestamp)
		m, err := owner.cl.Conversation(created[i].ID()).Send(ctx, client.NewText("bump"))
		mustNoErr(t, err)
		last = m
	}

	// Default query (the reader's conversations, -lm first): 1, 3, 5
	// (newest last message first), then 0 (older messages), then the
	// conversations without messages in any order.
	var defaults [][]string
	for _, r := range readers {
		list, err := r.cl.Query().Limit(100).Find(ctx)
		mustNoErr(t, err)
		got := convIDs(list)
		if len(got) != convs || !sameSet(got, convIDs(created)) {
			t.Fatalf("%s on %s: default query = %v, want the %d conversations %v", r.name, r.home.ID(), got, convs, convIDs(created))
		}
		if want := []string{created[1].ID(), created[3].ID(), created[5].ID(), created[0].ID()}; !slices.Equal(got[:4], want) {
			t.Fatalf("%s on %s: default query order %v, want %v first (sort -lm)", r.name, r.home.ID(), got, want)
		}
		for _, conv := range list {
			if !sameSet(conv.Info().Members, append(ids(readers...), owner.id)) {
				t.Fatalf("%s on %s: %s members %v", r.name, r.home.ID(), conv.ID(), conv.Info().Members)
			}
		}
		defaults = append(defaults, got)
	}
	for i := 1; i < len(defaults); i++ {
		if !slices.Equal(defaults[i], defaults[0]) {
			t.Fatalf("default query differs: %s says %v, %s says %v", readers[0].home.ID(), defaults[0], readers[i].home.ID(), defaults[i])
		}
	}

	// where: run == R and idx >= 1, ascending idx, skip 1, limit 3 -> 2, 3, 4;
	// descending createdAt, limit 2 -> 5, 4.
	for _, r := range readers {
		list, err := r.cl.Query().EqualTo("run", run).GreaterThanOrEqualTo("idx", 1).Ascending("idx").Skip(1).Limit(3).Find(ctx)
		mustNoErr(t, err)
		if got, want := convIDs(list), convIDs(created[2:5]); !slices.Equal(got, want) {
			t.Fatalf("%s on %s: where query = %v, want %v", r.name, r.home.ID(), got, want)
		}
		for i, conv := range list {
			if conv.Info().Name != fmt.Sprintf("conv %d", i+2) {
				t.Fatalf("%s on %s: where result %d = %+v", r.name, r.home.ID(), i, conv.Info())
			}
		}
		list, err = r.cl.Query().EqualTo("run", run).Descending("createdAt").Limit(2).Find(ctx)
		mustNoErr(t, err)
		if got, want := convIDs(list), []string{created[5].ID(), created[4].ID()}; !slices.Equal(got, want) {
			t.Fatalf("%s on %s: where -createdAt limit 2 = %v, want %v", r.name, r.home.ID(), got, want)
		}
		// A non-member finds them too: where queries have no implicit
		// membership filter.
		list, err = owner.cl.Query().ContainedIn("objectId", created[0].ID(), created[4].ID()).Ascending("idx").Find(ctx)
		mustNoErr(t, err)
		if got, want := convIDs(list), []string{created[0].ID(), created[4].ID()}; !slices.Equal(got, want) {
			t.Fatalf("objectId $in = %v, want %v", got, want)
		}
	}

	// History: one page of everything, and pages of 7 from newest to
	// oldest, identical on every node and equal to the acks.
	for _, r := range readers {
		conv := r.cl.Conversation(created[0].ID())
		page, err := conv.QueryMessages(ctx, client.HistoryQuery{Limit: 100})
		mustNoErr(t, err)
		if err := sameHistory(page, acked); err != nil {
			t.Fatalf("%s on %s: history: %v", r.name, r.home.ID(), err)
		}
		it := conv.MessageIterator(7)
		var paged []*client.Message
		for pages := 0; ; pages++ {
			p, done, err := it.Next(ctx)
			mustNoErr(t, err)
			paged = append(p, paged...)
			if done || pages > 10 {
				break
			}
		}
		if err := sameHistory(paged, acked); err != nil {
			t.Fatalf("%s on %s: paged history: %v", r.name, r.home.ID(), err)
		}
		// A window: after message 9 (exclusive) up to message 20 (inclusive).
		win, err := conv.QueryMessages(ctx, client.HistoryQuery{
			StartTime: acked[9].Timestamp, StartMessageID: acked[9].ID,
			EndTime: acked[20].Timestamp, EndMessageID: acked[20].ID, EndClosed: true, Limit: 100,
		})
		mustNoErr(t, err)
		if err := sameHistory(win, acked[10:21]); err != nil {
			t.Fatalf("%s on %s: history window: %v", r.name, r.home.ID(), err)
		}
	}
}

func convIDs(list []*client.Conversation) []string {
	out := make([]string, 0, len(list))
	for _, c := range list {
		out = append(out, c.ID())
	}
	return out
}

// sameHistory compares a history answer with the acknowledged messages:
// same ids in the same order, with the ack's timestamp and sender.
func sameHistory(got, want []*client.Message) error {
	var diff []string
	if len(got) != len(want) {
		diff = append(diff, fmt.Sprintf("%d messages, want %d", len(got), len(want)))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.ID != w.ID || !g.Timestamp.Equal(w.Timestamp) || g.From != w.From {
			diff = append(diff, fmt.Sprintf("#%d = %s at %d from %s, want %s at %d from %s",
				i, g.ID, g.Timestamp.UnixMilli(), g.From, w.ID, w.Timestamp.UnixMilli(), w.From))
		}
	}
	if len(diff) == 0 {
		return nil
	}
	if len(diff) > 5 {
		diff = append(diff[:5], "...")
	}
	return fmt.Errorf("%s", strings.Join(diff, "; "))
}

// afterMillisecond returns once the clock passed the millisecond of ts
// (server times have millisecond resolution; the nodes share this clock).
func afterMillisecond(t *testing.T, ts time.Time) {
	t.Helper()
	if ts.IsZero() {
		t.Fatal("afterMillisecond: zero time")
	}
	harness.CheckFor(t, time.Second, time.Millisecond, func() error {
		if time.Now().UnixMilli() <= ts.UnixMilli() {
			return errors.New("clock still in the same millisecond")
		}
		return nil
	})
}
