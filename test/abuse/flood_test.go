package abuse_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/test/harness"
)

// Sizes of BenchmarkAbuseQueryFlood.
const (
	floodConvs     = 20000 // conversations of the app
	floodCreators  = 40    // sockets creating them
	floodSockets   = 40    // sockets flooding node A with app-wide queries
	floodWindow    = 20 * time.Second
	floodOwnConvs  = 5 // the legitimate client's conversations
	floodQueryPage = 100
	// floodLegitPeriod paces the legitimate client: one round (a send and
	// a query) every 125 ms, 8 queries/s, below the default
	// queriesPerSecondPerSession (20), like a real client.
	floodLegitPeriod = 125 * time.Millisecond
)

// BenchmarkAbuseQueryFlood: three imnode processes, one app of 20,000
// conversations. A legitimate client on node B sends messages to its own
// conversations and queries them (the default query), one after the other,
// for floodWindow in each of three phases: idle; while 40 sockets on node A
// send app-wide queries the order index serves (where level=1, sort -lm,
// limit 100) as fast as they are answered; and while they send app-wide
// queries no index serves (sort by name: a scan, refused at the scan
// budget). It reports the legitimate client's p99 per operation in each
// phase, the ratios to idle, and what each flood got answered or refused.
// Run it once:
//
//	go test ./test/abuse/ -run '^$' -bench BenchmarkAbuseQueryFlood -benchtime 1x
func BenchmarkAbuseQueryFlood(b *testing.B) {
	c := harness.Start(b, 3, harness.Options{})
	nodes := c.Running()
	nodeA, nodeB := nodes[0], nodes[1]
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)

	createConvs(ctx, b, apps.Dev(), nodes)
	legit := login(ctx, b, apps.Dev(), nodeB, "legit")
	var own []*client.Conversation
	for i := range floodOwnConvs {
		conv, err := legit.CreateConversation(ctx, client.CreateOptions{Members: []string{fmt.Sprint("friend", i)}, Unique: false,
			Attributes: map[string]any{"level": 2}})
		if err != nil {
			b.Fatal(err)
		}
		own = append(own, conv)
	}
	flooders := make([]*client.IMClient, floodSockets)
	for i := range flooders {
		flooders[i] = login(ctx, b, apps.Dev(), nodeA, fmt.Sprint("flooder", i))
	}

	for range b.N {
		idleSend, idleQuery := legitLoop(ctx, b, legit, own, floodWindow)
		b.ReportMetric(ms(idleSend.p99()), "idle-send-p99-ms")
		b.ReportMetric(ms(idleQuery.p99()), "idle-query-p99-ms")
		b.Logf("legitimate client on %s: idle: send p99 %v, query p99 %v (%d rounds)", nodeB.ID(), idleSend.p99(), idleQuery.p99(), idleSend.n())
		for _, kind := range []string{"indexed", "scan"} {
			stats, stop := flood(ctx, flooders, kind == "scan")
			send, query := legitLoop(ctx, b, legit, own, floodWindow)
			stop()
			b.ReportMetric(ms(send.p99()), kind+"-send-p99-ms")
			b.ReportMetric(ms(query.p99()), kind+"-query-p99-ms")
			b.ReportMetric(ms(send.p99())/ms(idleSend.p99()), kind+"-send-p99-ratio")
			b.ReportMetric(ms(query.p99())/ms(idleQuery.p99()), kind+"-query-p99-ratio")
			b.Logf("%s flood on %s: send p99 %v, query p99 %v (%d rounds); flood answered %d, refused %d in %v",
				kind, nodeA.ID(), send.p99(), query.p99(), send.n(), stats.ok.Load(), stats.refused.Load(), floodWindow)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// login connects id of app to node home only.
func login(ctx context.Context, tb testing.TB, app apps.App, home *harness.Node, id string) *client.IMClient {
	tb.Helper()
	cfg := client.DefaultConfig(app.ID, home.ClientURL())
	cfg.AppKey = app.Key
	cfg.Server = home.ServerURL()
	cfg.Logger = slog.New(slog.DiscardHandler)
	conn, err := client.Dial(ctx, cfg)
	if err != nil {
		tb.Fatalf("%s: dial %s: %v", id, home.ID(), err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	cl, err := conn.Login(ctx, id, client.LoginOptions{})
	if err != nil {
		tb.Fatalf("%s: login on %s: %v", id, home.ID(), err)
	}
	return cl
}

// createConvs creates floodConvs conversations of app, named
// "conversation 00000"... with level 0 or 1, from floodCreators sockets
// spread over nodes: creator i creates those whose number is i modulo
// floodCreators. It returns their ids by number.
func createConvs(ctx context.Context, tb testing.TB, app apps.App, nodes []*harness.Node) []string {
	tb.Helper()
	ids := make([]string, floodConvs)
	errs := make(chan error, floodCreators)
	var wg sync.WaitGroup
	for i := range floodCreators {
		cl := login(ctx, tb, app, nodes[i%len(nodes)], fmt.Sprint("creator", i))
		wg.Go(func() {
			for n := i; n < floodConvs; n += floodCreators {
				conv, err := cl.CreateConversation(ctx, client.CreateOptions{Members: []string{fmt.Sprint("member", n)}, Unique: false,
					Name: fmt.Sprintf("conversation %05d", n), Attributes: map[string]any{"level": n % 2}})
				if err != nil {
					errs <- fmt.Errorf("create conversation %d: %w", n, err)
					return
				}
				ids[n] = conv.ID()
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
	return ids
}

// floodStats counts the flood's answers: results, and errors (the scan
// budget, the per-app query limit).
type floodStats struct{ ok, refused atomic.Int64 }

// flood starts the query flood, of queries sorted by name (no index) if
// scan, else by -lm; stop ends it and waits for its goroutines.
func flood(ctx context.Context, flooders []*client.IMClient, scan bool) (*floodStats, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stats := &floodStats{}
	var wg sync.WaitGroup
	for _, cl := range flooders {
		wg.Go(func() {
			for ctx.Err() == nil {
				q := cl.Query().EqualTo("level", 1).Limit(floodQueryPage).Descending("lm")
				if scan {
					q = cl.Query().EqualTo("level", 1).Limit(floodQueryPage).Ascending("name")
				}
				if _, err := q.Find(ctx); err == nil {
					stats.ok.Add(1)
				} else if !errors.Is(err, context.Canceled) {
					stats.refused.Add(1)
				}
			}
		})
	}
	return stats, func() { cancel(); wg.Wait() }
}

// legitLoop sends a message to one of own and runs the default query, in
// turn, one round every floodLegitPeriod (or as soon as the previous one
// ends if it took longer), for d, and returns the latencies of each.
func legitLoop(ctx context.Context, tb testing.TB, cl *client.IMClient, own []*client.Conversation, d time.Duration) (send, query *latencies) {
	tb.Helper()
	send, query = &latencies{}, &latencies{}
	end := time.Now().Add(d)
	tick := time.NewTicker(floodLegitPeriod)
	defer tick.Stop()
	for i := 0; time.Now().Before(end); i++ {
		if i > 0 {
			<-tick.C
		}
		start := time.Now()
		if _, err := own[i%len(own)].Send(ctx, client.NewText(fmt.Sprint("hello ", i))); err != nil {
			tb.Fatalf("legitimate send %d: %v", i, err)
		}
		send.add(time.Since(start))
		start = time.Now()
		list, err := cl.Query().Find(ctx)
		if err != nil {
			tb.Fatalf("legitimate query %d: %v", i, err)
		}
		query.add(time.Since(start))
		if len(list) != len(own) {
			tb.Fatalf("legitimate query %d: %d conversations, want its %d", i, len(list), len(own))
		}
	}
	return send, query
}

// latencies collects the latencies of one operation (a few thousand at
// most: one client, one at a time).
type latencies struct{ d []time.Duration }

func (l *latencies) add(d time.Duration) { l.d = append(l.d, d) }
func (l *latencies) n() int              { return len(l.d) }

// p99 returns the 99th percentile (nearest rank).
func (l *latencies) p99() time.Duration {
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[(len(s)*99+99)/100-1]
}
