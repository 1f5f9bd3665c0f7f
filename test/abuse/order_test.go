package abuse_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/test/harness"
)

// orderedBudget is the scan budget of the app in
// TestAbuseOrderedQueryExaminesFewRecords: what an ordered query over
// 20,000 conversations may examine.
const orderedBudget = 40

// TestAbuseOrderedQueryExaminesFewRecords: three imnode processes, an app
// of 20,000 conversations whose scan budget is 40 records. App-wide
// queries sorted by -lm (the default) and -updatedAt with limit 10, whose
// where matches half of the conversations, are answered from every node
// (the order index: they examine at most 40 records) with the newest
// conversations first; the same query sorted by name, which no index
// serves, is answered 4310 naming the budget of 40.
func TestAbuseOrderedQueryExaminesFewRecords(t *testing.T) {
	app := apps.App{ID: "ordered-app", Key: "ordered-key", MasterKey: "ordered-master"}
	file := filepath.Join(t.TempDir(), "apps.json")
	data, err := json.Marshal(map[string]any{"apps": []any{map[string]any{"appId": app.ID, "appKey": app.Key, "masterKey": app.MasterKey,
		"limits": map[string]any{"queryScanBudget": orderedBudget, "opsPerMinutePerClient": -1}}}}) // 40 clients create 20,000 conversations
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c := harness.Start(t, 3, harness.Options{ExtraArgs: []string{"--apps-file", file}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	nodes := c.Running()
	ids := createConvs(ctx, t, app, nodes)

	// The newest conversations by lm: three of level 0 that get a message.
	sender := login(ctx, t, app, nodes[0], "creator0") // created conversations 0, 40, 80, ...
	bumped := map[string]bool{}
	for _, n := range []int{4000, 400, 12000} {
		if _, err := sender.Conversation(ids[n]).Send(ctx, client.NewText("bump")); err != nil {
			t.Fatalf("send to conversation %d: %v", n, err)
		}
		bumped[ids[n]] = true
	}
	for _, nd := range nodes {
		cl := login(ctx, t, app, nd, "reader-"+nd.ID())
		// The sweeper builds each shard's index within 30 s of the shard's
		// first conversation of the app; until then a query reads the
		// shards without it whole and fails the budget.
		var byLM []*client.Conversation
		harness.CheckFor(t, 2*time.Minute, 200*time.Millisecond, func() error {
			byLM, err = cl.Query().EqualTo("level", 0).Limit(10).Find(ctx)
			return err
		})
		if len(byLM) != 10 || !bumped[byLM[0].ID()] || !bumped[byLM[1].ID()] || !bumped[byLM[2].ID()] ||
			byLM[0].Info().LastMessageAt.Before(byLM[1].Info().LastMessageAt) || byLM[1].Info().LastMessageAt.Before(byLM[2].Info().LastMessageAt) {
			t.Fatalf("on %s: -lm query = %v, want the three with messages %v first, newest first", nd.ID(), convIDs(byLM), bumped)
		}
		byUpdated, err := cl.Query().EqualTo("level", 1).Descending("updatedAt").Limit(10).Find(ctx)
		if err != nil {
			t.Fatalf("on %s: -updatedAt query over %d conversations with a scan budget of %d: %v", nd.ID(), floodConvs, orderedBudget, err)
		}
		if len(byUpdated) != 10 {
			t.Fatalf("on %s: -updatedAt query = %d results", nd.ID(), len(byUpdated))
		}
		for i := 1; i < len(byUpdated); i++ {
			if byUpdated[i].Info().UpdatedAt.After(byUpdated[i-1].Info().UpdatedAt) {
				t.Fatalf("on %s: -updatedAt query out of order at %d: %v", nd.ID(), i, convIDs(byUpdated))
			}
		}
		_, err = cl.Query().EqualTo("level", 1).Ascending("name").Limit(10).Find(ctx)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != 4310 || !strings.Contains(ce.Detail, fmt.Sprint(orderedBudget)) {
			t.Fatalf("on %s: query sorted by name (no index): %v, want 4310 naming the budget of %d", nd.ID(), err, orderedBudget)
		}
	}
}

func convIDs(list []*client.Conversation) []string {
	out := make([]string, len(list))
	for i, c := range list {
		out[i] = c.ID()
	}
	return out
}
