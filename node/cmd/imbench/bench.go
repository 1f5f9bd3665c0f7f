package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcluster/imcluster/client"
)

// benchConfig is what one run does.
type benchConfig struct {
	URLs        []string
	AppID       string
	Subprotocol string
	Clients     int           // logged-in clients, paired into 1:1 conversations
	Conns       int           // WebSocket connections the clients share
	Rate        float64       // messages per second per client
	Duration    time.Duration // measured sending period
	Size        int           // message content size in bytes
	Parallel    int           // concurrent logins / conversation creations during setup
	Drain       time.Duration // how long to wait for in-flight pushes after sending stops
	Logger      *slog.Logger
}

// maxErrorKinds bounds the error table: further kinds count as "other".
const maxErrorKinds = 32

// bench holds the shared counters of a run. Every field is safe for
// concurrent use; memory is constant in the number of messages.
type bench struct {
	cfg   benchConfig
	runID string
	place placement
	// misplaced counts connections that could not reach their URL and
	// connected to a failover URL instead.
	misplaced atomic.Uint64
	measure   atomic.Bool // inside the measured window
	sent      atomic.Uint64
	acked     atomic.Uint64
	received  atomic.Uint64
	ackLat    histogram
	recvLat   histogram

	errMu  sync.Mutex
	errors map[string]uint64
}

// result is the report of a run (also its JSON form).
type result struct {
	URLs             []string          `json:"urls"`
	Clients          int               `json:"clients"`
	Conns            int               `json:"connections"`
	RatePerClient    float64           `json:"ratePerClient"`
	DurationSeconds  float64           `json:"durationSeconds"`
	MessageBytes     int               `json:"messageBytes"`
	Sent             uint64            `json:"sent"`
	Acked            uint64            `json:"acked"`
	Received         uint64            `json:"received"`
	AckedPerSecond   float64           `json:"ackedPerSecond"`
	OfferedPerSecond float64           `json:"offeredPerSecond"`
	SendToAck        latency           `json:"sendToAck"`
	SendToReceive    latency           `json:"sendToReceive"`
	Errors           map[string]uint64 `json:"errors"`
	DroppedFrames    uint64            `json:"droppedFrames"`
	SetupSeconds     float64           `json:"setupSeconds"`
	Placement        placementSummary  `json:"placement"`
	MisplacedConns   uint64            `json:"misplacedConnections"` // dialed to a failover URL, not their own
}

type latency struct {
	Count  uint64  `json:"count"`
	P50Ms  float64 `json:"p50Ms"`
	P90Ms  float64 `json:"p90Ms"`
	P99Ms  float64 `json:"p99Ms"`
	MaxMs  float64 `json:"maxMs"`
	MeanMs float64 `json:"meanMs"`
}

func latencyOf(h *histogram) latency {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return latency{Count: h.Count(), P50Ms: ms(h.Quantile(0.5)), P90Ms: ms(h.Quantile(0.9)), P99Ms: ms(h.Quantile(0.99)),
		MaxMs: ms(h.Max()), MeanMs: ms(h.Mean())}
}

func (b *bench) recordError(err error) {
	kind := "other"
	var se *client.Error
	switch {
	case errors.As(err, &se):
		kind = fmt.Sprintf("%d %s", se.Code, se.Reason)
	case errors.Is(err, context.DeadlineExceeded):
		kind = "timeout"
	case errors.Is(err, client.ErrNotConnected), errors.Is(err, client.ErrConnectionLost):
		kind = "disconnected"
	}
	b.errMu.Lock()
	defer b.errMu.Unlock()
	if _, ok := b.errors[kind]; !ok && len(b.errors) >= maxErrorKinds {
		kind = "other"
	}
	b.errors[kind]++
}

// contentPrefix marks benchmark messages: "imbench:<unix ns>:" + padding.
const contentPrefix = "imbench:"

func (b *bench) content(now time.Time) string {
	s := contentPrefix + strconv.FormatInt(now.UnixNano(), 10) + ":"
	if pad := b.cfg.Size - len(s); pad > 0 {
		s += strings.Repeat("x", pad)
	}
	return s
}

// onEvent runs on a socket read goroutine: it only parses and records.
func (b *bench) onEvent(ev client.Event) {
	me, ok := ev.(client.MessageEvent)
	if !ok || !strings.HasPrefix(me.Message.Content, contentPrefix) {
		return
	}
	stamp, _, ok := strings.Cut(me.Message.Content[len(contentPrefix):], ":")
	if !ok {
		return
	}
	ns, err := strconv.ParseInt(stamp, 10, 64)
	if err != nil {
		return
	}
	if b.measure.Load() {
		b.received.Add(1)
		b.recvLat.Record(time.Since(time.Unix(0, ns)))
	}
}

// run executes the benchmark: connect, log in, pair, send, drain, report.
func run(ctx context.Context, cfg benchConfig) (*result, error) {
	if len(cfg.URLs) == 0 || cfg.Clients < 1 || cfg.Conns < 1 || cfg.Conns > cfg.Clients {
		return nil, errors.New("need at least one URL and 1 <= connections <= clients")
	}
	b := &bench{cfg: cfg, runID: strconv.FormatInt(time.Now().UnixNano()%1e9, 36), errors: map[string]uint64{},
		place: place(cfg.Clients, cfg.Conns, len(cfg.URLs))}
	setupStart := time.Now()
	conns, err := b.dialAll(ctx)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	if err != nil {
		return nil, err
	}
	clients, err := b.loginAll(ctx, conns)
	if err != nil {
		return nil, err
	}
	convs, err := b.pairAll(ctx, clients)
	if err != nil {
		return nil, err
	}
	setup := time.Since(setupStart)
	cfg.Logger.Info("Setup done", "clients", len(clients), "conversations", len(convs)/2, "took", setup)

	sendCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	b.measure.Store(true)
	start := time.Now()
	var wg sync.WaitGroup
	for _, conv := range convs {
		wg.Go(func() { b.sendLoop(sendCtx, conv) })
	}
	wg.Go(func() { b.progress(sendCtx, start) })
	wg.Wait()
	elapsed := time.Since(start)
	b.drain(ctx)
	b.measure.Store(false)

	var dropped uint64
	for _, c := range conns {
		dropped += c.DroppedFrames()
	}
	b.errMu.Lock()
	errs := maps.Clone(b.errors)
	b.errMu.Unlock()
	return &result{
		URLs: cfg.URLs, Clients: cfg.Clients, Conns: len(conns), RatePerClient: cfg.Rate,
		DurationSeconds: elapsed.Seconds(), MessageBytes: cfg.Size,
		Sent: b.sent.Load(), Acked: b.acked.Load(), Received: b.received.Load(),
		AckedPerSecond:   float64(b.acked.Load()) / elapsed.Seconds(),
		OfferedPerSecond: cfg.Rate * float64(cfg.Clients),
		SendToAck:        latencyOf(&b.ackLat), SendToReceive: latencyOf(&b.recvLat),
		Errors: errs, DroppedFrames: dropped, SetupSeconds: setup.Seconds(),
		Placement: b.place.summary(len(cfg.URLs)), MisplacedConns: b.misplaced.Load(),
	}, nil
}

// progressInterval is how often a running benchmark logs its counters
// (at -v).
const progressInterval = 5 * time.Second

// progress logs the counters every progressInterval until ctx ends.
func (b *bench) progress(ctx context.Context, start time.Time) {
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.cfg.Logger.Info("Sending", "elapsed", time.Since(start).Round(time.Second), "sent", b.sent.Load(),
				"acked", b.acked.Load(), "received", b.received.Load(), "ackP99", b.ackLat.Quantile(0.99))
		}
	}
}

// drain waits until every acked message has been received or cfg.Drain
// passes, so that late pushes still count.
func (b *bench) drain(ctx context.Context) {
	deadline := time.Now().Add(b.cfg.Drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if b.received.Load() >= b.acked.Load() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialAll opens cfg.Conns connections, spreading them over the URLs as
// b.place says; the other URLs follow in rotated order as failover targets.
func (b *bench) dialAll(ctx context.Context) ([]*client.Conn, error) {
	conns := make([]*client.Conn, 0, b.cfg.Conns)
	for j := range b.cfg.Conns {
		u := b.place.ConnURL[j]
		urls := append(append([]string(nil), b.cfg.URLs[u:]...), b.cfg.URLs[:u]...)
		cc := client.DefaultConfig(b.cfg.AppID, urls...)
		cc.Subprotocol = b.cfg.Subprotocol
		cc.Logger = b.cfg.Logger
		c, err := client.Dial(ctx, cc)
		if err != nil {
			return conns, fmt.Errorf("dial connection %d: %w", j, err)
		}
		// The client moves the URL it connected to to the end of its list.
		if got := c.URLs(); len(got) > 0 && got[len(got)-1] != urls[0] {
			b.misplaced.Add(1)
			b.cfg.Logger.Warn("Connection fell back to another URL", "conn", j, "want", urls[0], "got", got[len(got)-1])
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// parallel runs f(0..n-1) with at most cfg.Parallel in flight and returns
// the first error.
func (b *bench) parallel(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, b.cfg.Parallel)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

func (b *bench) loginAll(ctx context.Context, conns []*client.Conn) ([]*client.IMClient, error) {
	clients := make([]*client.IMClient, b.cfg.Clients)
	err := b.parallel(ctx, b.cfg.Clients, func(ctx context.Context, i int) error {
		id := fmt.Sprintf("bench-%s-%d", b.runID, i)
		cl, err := conns[b.place.ClientConn[i]].Login(ctx, id, client.LoginOptions{OnEvent: b.onEvent})
		if err != nil {
			return fmt.Errorf("login %s: %w", id, err)
		}
		clients[i] = cl
		return nil
	})
	return clients, err
}

// pairAll creates one 1:1 conversation per pair (2i, 2i+1) and returns a
// handle for each side.
func (b *bench) pairAll(ctx context.Context, clients []*client.IMClient) ([]*client.Conversation, error) {
	pairs := len(clients) / 2
	convs := make([]*client.Conversation, 2*pairs)
	err := b.parallel(ctx, pairs, func(ctx context.Context, i int) error {
		a, z := clients[2*i], clients[2*i+1]
		conv, err := a.CreateConversation(ctx, client.CreateOptions{Members: []string{z.ID()}, Unique: true, Name: "imbench"})
		if err != nil {
			return fmt.Errorf("create conversation %s-%s: %w", a.ID(), z.ID(), err)
		}
		convs[2*i], convs[2*i+1] = conv, z.Conversation(conv.ID())
		return nil
	})
	return convs, err
}

// sendLoop sends at cfg.Rate until ctx ends, one message in flight at a
// time; a slow ack makes the loop skip ticks, so the achieved rate shows
// the capacity (closed loop per client, open across clients).
func (b *bench) sendLoop(ctx context.Context, conv *client.Conversation) {
	if b.cfg.Rate <= 0 {
		return
	}
	interval := time.Duration(float64(time.Second) / b.cfg.Rate)
	// A random phase spreads the clients over the interval.
	select {
	case <-time.After(rand.N(interval)): //nolint:gosec // jitter, not a secret
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		now := time.Now()
		b.sent.Add(1)
		sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), client.DefaultRequestTimeout)
		_, err := conv.Send(sendCtx, client.NewRaw(b.content(now)))
		cancel()
		if err != nil {
			b.recordError(err)
		} else {
			b.acked.Add(1)
			b.ackLat.Record(time.Since(now))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
