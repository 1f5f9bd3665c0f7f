package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/test/harness"
)

// metricValue returns the value of the sample named series (name and
// labels as the exposition writes them) on nd's admin port, 0 if absent.
func metricValue(ctx context.Context, t *testing.T, nd *harness.Node, series string) float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+nd.Addrs().Admin+"/metrics", nil)
	mustNoErr(t, err)
	resp, err := http.DefaultClient.Do(req)
	mustNoErr(t, err)
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			mustNoErr(t, err)
			return f
		}
	}
	mustNoErr(t, sc.Err())
	return 0
}

// TestClusterTakeoverCatchesUpByChangeLog: a conversation's coordinator is
// paused (SIGSTOP) while the members go on sending through a stand-in; when
// it resumes it takes its shard back and catches up from the other
// replicas' change logs (it has a cursor in each from when it joined): by
// the change log, not by digests, and then holds every acknowledged
// message.
func TestClusterTakeoverCatchesUpByChangeLog(t *testing.T) {
	c, ctx, tom, jerry := tomAndJerry(t, harness.Options{})
	victim := c.Node(2) // it joined last: it caught up from both others
	cid, _ := convCoordinatedBy(ctx, t, c, tom, jerry, "change log", func(coord *harness.Node) bool { return coord == victim })
	var acked []*client.Message
	for i := range 10 {
		m, _ := sendRetrying(ctx, t, tom.cl.Conversation(cid), fmt.Sprintf("before %d", i))
		acked = append(acked, m)
	}
	const changes = `imnode_replica_catchups_total{method="changes"}`
	before := metricValue(ctx, t, victim, changes)
	victim.Pause(t)
	for i := range 20 {
		u := []*user{tom, jerry}[i%2]
		m, _ := sendRetrying(ctx, t, u.cl.Conversation(cid), fmt.Sprintf("while paused %d", i))
		acked = append(acked, m)
	}
	victim.Resume(t)
	harness.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if coord := coordinatorOf(ctx, t, c, cid); coord != victim {
			return fmt.Errorf("%s does not coordinate %s again yet", victim.ID(), cid)
		}
		return nil
	})
	if after := metricValue(ctx, t, victim, changes); after <= before {
		t.Fatalf("%s took its shard back without a catch-up by change log (%v before, %v after)", victim.ID(), before, after)
	}
	dm, err := victim.Admin().DebugMessages(ctx, apps.DevAppID, cid)
	mustNoErr(t, err)
	stored := map[string]bool{}
	for _, m := range dm.Messages {
		stored[m.ID] = true
	}
	for _, m := range acked {
		if !stored[m.ID] {
			t.Fatalf("%s coordinates %s again but lacks acknowledged message %s (%q)", victim.ID(), cid, m.ID, m.Content)
		}
	}
	c.WaitReplicasAgree(t, 20*time.Second)
}
