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

// Protocols imbench speaks.
const (
	protoLeanCloud  = "leancloud"
	protoCentrifugo = "centrifugo"
)

// Shapes of load.
const (
	// shapePairs pairs the clients (2i, 2i+1) into 1:1 conversations (or
	// channels); every client sends at the step's rate.
	shapePairs = "pairs"
	// shapeRoom puts every client in one room; client 0 sends at the step's
	// rate and the others receive every message.
	shapeRoom = "room"
	// shapeIdle connects and logs in every client, sends nothing and
	// reports the servers' resident memory per socket.
	shapeIdle = "idle"
)

// Setup timeouts.
const (
	dialTimeout  = 10 * time.Second
	setupTimeout = 30 * time.Second
)

// slo is the service level a step must meet to count: at least MinAcked of
// the offered messages acknowledged and received (every receiver), and the
// send-to-receive p99 at most MaxP99.
type slo struct {
	MinAcked float64       `json:"minAcked"`
	MaxP99   time.Duration `json:"maxP99Ns"`
}

// benchConfig is what one run does.
type benchConfig struct {
	URLs             []string
	Protocol         string // protoLeanCloud or protoCentrifugo
	Shape            string // shapePairs, shapeRoom or shapeIdle
	AppID            string // LeanCloud app id
	Subprotocol      string // LeanCloud WebSocket subprotocol
	CentrifugoSecret string // HMAC secret of Centrifugo connection tokens
	Clients          int    // logged-in clients
	Conns            int    // WebSocket connections the clients share (LeanCloud; Centrifugo has one per client)
	// Rates are the steps: messages per second per sending client, run in
	// order with the same clients, each for Duration.
	Rates    []float64
	Duration time.Duration // measured sending period of each step
	Size     int           // message content size in bytes
	Parallel int           // concurrent logins / conversation creations during setup
	Drain    time.Duration // how long to wait for in-flight pushes after a step's sending stops
	// Warmup sends at the first rate for this long before the first step,
	// unmeasured: the servers settle after the setup (flushes of the setup's
	// writes, garbage collection) and the clients' paths get warm.
	Warmup time.Duration
	Settle time.Duration // idle shape: wait after setup before reading the servers' memory
	// KeepGoing runs every step; otherwise the run stops after the first
	// step that misses the SLO.
	KeepGoing bool
	SLO       slo
	// PIDs are server processes on this machine whose CPU time (per step)
	// and resident memory (idle shape) are reported.
	PIDs   []int
	Logger *slog.Logger
}

// maxErrorKinds bounds each step's error table: further kinds count as
// "other". maxSteps bounds the steps (each has two histograms).
const (
	maxErrorKinds = 32
	maxSteps      = 64
)

// sender sends one message with the given content and waits for the
// server's acknowledgement.
type sender func(ctx context.Context, content string) error

// driver is a protocol's side of a run.
type driver interface {
	// setup connects every client in the shape and returns the senders and
	// how many clients receive each message (no senders for idle).
	setup(ctx context.Context) ([]sender, int, error)
	droppedFrames() uint64
	misplacedConns() uint64
	// close disconnects every client (also after a failed setup).
	close()
}

// stepStats are the counters of one step. Every field is safe for
// concurrent use; memory is constant in the number of messages.
type stepStats struct {
	sent     atomic.Uint64
	acked    atomic.Uint64
	received atomic.Uint64
	ackLat   histogram
	recvLat  histogram

	errMu  sync.Mutex
	errors map[string]uint64
}

// bench holds the state of a run.
type bench struct {
	cfg   benchConfig
	runID string
	place placement
	// misplaced counts connections that could not reach their URL and
	// connected to a failover URL instead.
	misplaced atomic.Uint64
	steps     []*stepStats
	// current is the step whose messages are being counted, -1 between
	// steps.
	current atomic.Int32
}

// result is the report of a run (also its JSON form).
type result struct {
	Label          string           `json:"label,omitempty"`
	Protocol       string           `json:"protocol"`
	Shape          string           `json:"shape"`
	URLs           []string         `json:"urls"`
	Clients        int              `json:"clients"`
	Conns          int              `json:"connections"`
	MessageBytes   int              `json:"messageBytes"`
	Receivers      int              `json:"receiversPerMessage"`
	SetupSeconds   float64          `json:"setupSeconds"`
	Placement      placementSummary `json:"placement"`
	MisplacedConns uint64           `json:"misplacedConnections"` // dialed to a failover URL, not their own
	DroppedFrames  uint64           `json:"droppedFrames"`
	SLO            slo              `json:"slo"`
	Steps          []stepResult     `json:"steps"`
	// Best is the index of the highest-rate step that met the SLO, -1 if
	// none did.
	Best int         `json:"bestStep"`
	Idle *idleResult `json:"idle,omitempty"`
}

type stepResult struct {
	RatePerClient    float64 `json:"ratePerClient"`
	OfferedPerSecond float64 `json:"offeredPerSecond"`
	// OfferedMessages is OfferedPerSecond × the configured step duration.
	OfferedMessages  float64           `json:"offeredMessages"`
	DurationSeconds  float64           `json:"durationSeconds"`
	Sent             uint64            `json:"sent"`
	Acked            uint64            `json:"acked"`
	Received         uint64            `json:"received"`
	ExpectedReceived uint64            `json:"expectedReceived"` // acked × receivers per message
	AckedPerSecond   float64           `json:"ackedPerSecond"`
	DeliveredPerSec  float64           `json:"deliveredPerSecond"`
	SendToAck        latency           `json:"sendToAck"`
	SendToReceive    latency           `json:"sendToReceive"`
	Errors           map[string]uint64 `json:"errors"`
	// ServerCPUSeconds is the user+system CPU time of the --pid processes
	// from the step's start to the end of its drain.
	ServerCPUSeconds float64 `json:"serverCpuSeconds"`
	// ServerCPUPerMessageMs is ServerCPUSeconds per acknowledged message.
	ServerCPUPerMessageMs float64 `json:"serverCpuPerMessageMs"`
	// ServerCtxSwitchesPerMessage is the context switches of the --pid
	// processes' threads over the same period per acknowledged message.
	ServerCtxSwitchesPerMessage float64 `json:"serverCtxSwitchesPerMessage"`
	MeetsSLO                    bool    `json:"meetsSlo"`
	// Miss says why the step missed the SLO.
	Miss string `json:"miss,omitempty"`
}

// idleResult is the idle shape's memory report.
type idleResult struct {
	Sockets        int     `json:"sockets"`
	RSSBeforeKiB   int64   `json:"serverRssBeforeKiB"`
	RSSAfterKiB    int64   `json:"serverRssAfterKiB"`
	RSSPerSocketKB float64 `json:"serverRssPerSocketKiB"`
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

func (s *stepStats) recordError(err error) {
	kind := "other"
	var se *client.Error
	var ce *cfError
	switch {
	case errors.As(err, &se):
		kind = fmt.Sprintf("%d %s", se.Code, se.Reason)
	case errors.As(err, &ce):
		kind = fmt.Sprintf("%d %s", ce.Code, ce.Message)
	case errors.Is(err, context.DeadlineExceeded):
		kind = "timeout"
	case errors.Is(err, client.ErrNotConnected), errors.Is(err, client.ErrConnectionLost), errors.Is(err, errCfClosed):
		kind = "disconnected"
	}
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if _, ok := s.errors[kind]; !ok && len(s.errors) >= maxErrorKinds {
		kind = "other"
	}
	s.errors[kind]++
}

// contentPrefix marks benchmark messages:
// "imbench:<step>:<unix ns>:" + padding.
const contentPrefix = "imbench:"

func (b *bench) content(step int, now time.Time) string {
	s := contentPrefix + strconv.Itoa(step) + ":" + strconv.FormatInt(now.UnixNano(), 10) + ":"
	if pad := b.cfg.Size - len(s); pad > 0 {
		s += strings.Repeat("x", pad)
	}
	return s
}

// parseContent returns the step and send time of a benchmark message.
func parseContent(s string) (step int, sent time.Time, ok bool) {
	rest, ok := strings.CutPrefix(s, contentPrefix)
	if !ok {
		return 0, time.Time{}, false
	}
	st, rest, ok1 := strings.Cut(rest, ":")
	ns, _, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		return 0, time.Time{}, false
	}
	step, err1 := strconv.Atoi(st)
	n, err2 := strconv.ParseInt(ns, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, time.Time{}, false
	}
	return step, time.Unix(0, n), true
}

// onContent runs on a socket read goroutine for every message received: it
// only parses and records. A message counts for its own step while that
// step (sending or draining) is current.
func (b *bench) onContent(s string) {
	step, sent, ok := parseContent(s)
	if !ok || step != int(b.current.Load()) || step < 0 || step >= len(b.steps) {
		return
	}
	st := b.steps[step]
	st.received.Add(1)
	st.recvLat.Record(time.Since(sent))
}

func (b *bench) newDriver() driver {
	if b.cfg.Protocol == protoCentrifugo {
		return &centrifugoDriver{b: b}
	}
	return &leanCloudDriver{b: b}
}

// run executes the benchmark: set up the clients, then run each step (send
// for Duration, drain) or, for the idle shape, measure the servers' memory.
func run(ctx context.Context, cfg benchConfig) (*result, error) {
	if len(cfg.URLs) == 0 || cfg.Clients < 2 || cfg.Conns < 1 || cfg.Conns > cfg.Clients {
		return nil, errors.New("need at least one URL, 2 or more clients and 1 <= connections <= clients")
	}
	if cfg.Protocol == protoCentrifugo {
		cfg.Conns = cfg.Clients
	}
	if cfg.Shape != shapeIdle && (len(cfg.Rates) == 0 || len(cfg.Rates) > maxSteps) {
		return nil, fmt.Errorf("need 1 to %d rate steps", maxSteps)
	}
	b := &bench{cfg: cfg, runID: strconv.FormatInt(time.Now().UnixNano()%1e9, 36),
		place: place(cfg.Clients, cfg.Conns, len(cfg.URLs))}
	b.current.Store(-1)
	for range cfg.Rates {
		b.steps = append(b.steps, &stepStats{errors: map[string]uint64{}})
	}
	rssBefore, err := totalRSS(cfg.PIDs)
	if err != nil {
		return nil, err
	}
	setupStart := time.Now()
	d := b.newDriver()
	defer d.close()
	senders, receivers, err := d.setup(ctx)
	if err != nil {
		return nil, err
	}
	setup := time.Since(setupStart)
	cfg.Logger.Info("Setup done", "clients", cfg.Clients, "senders", len(senders), "took", setup)
	res := &result{
		Protocol: cfg.Protocol, Shape: cfg.Shape, URLs: cfg.URLs, Clients: cfg.Clients, Conns: cfg.Conns,
		MessageBytes: cfg.Size, Receivers: receivers, SetupSeconds: setup.Seconds(),
		Placement: b.place.summary(len(cfg.URLs)), SLO: cfg.SLO, Best: -1,
	}
	if cfg.Shape == shapeIdle {
		select {
		case <-time.After(cfg.Settle):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		after, err := totalRSS(cfg.PIDs)
		if err != nil {
			return nil, err
		}
		res.Idle = &idleResult{Sockets: cfg.Conns, RSSBeforeKiB: rssBefore, RSSAfterKiB: after,
			RSSPerSocketKB: float64(after-rssBefore) / float64(cfg.Conns)}
	} else {
		b.warmup(ctx, senders)
		for i, rate := range cfg.Rates {
			st, err := b.step(ctx, i, rate, senders, receivers)
			if err != nil {
				return nil, err
			}
			res.Steps = append(res.Steps, st)
			if st.MeetsSLO && (res.Best < 0 || rate > cfg.Rates[res.Best]) {
				res.Best = i
			}
			if !st.MeetsSLO && !cfg.KeepGoing {
				break
			}
		}
	}
	res.DroppedFrames, res.MisplacedConns = d.droppedFrames(), d.misplacedConns()
	return res, nil
}

// step runs one rate step: every sender sends at rate for cfg.Duration,
// then the step drains.
func (b *bench) step(ctx context.Context, i int, rate float64, senders []sender, receivers int) (stepResult, error) {
	st := b.steps[i]
	b.current.Store(int32(i)) //nolint:gosec // i < maxSteps
	use0, err := totalUsage(b.cfg.PIDs)
	if err != nil {
		return stepResult{}, err
	}
	sendCtx, cancel := context.WithTimeout(ctx, b.cfg.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Go(func() { b.sendLoop(sendCtx, i, rate, st, s) })
	}
	wg.Go(func() { b.progress(sendCtx, start, st) })
	wg.Wait()
	elapsed := time.Since(start)
	expected := func() uint64 { return st.acked.Load() * uint64(receivers) } //nolint:gosec // receivers >= 0
	b.drain(ctx, st, expected)
	b.current.Store(-1)
	use1, err := totalUsage(b.cfg.PIDs)
	if err != nil {
		return stepResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return stepResult{}, err
	}
	st.errMu.Lock()
	errs := maps.Clone(st.errors)
	st.errMu.Unlock()
	r := stepResult{
		RatePerClient: rate, OfferedPerSecond: rate * float64(len(senders)), DurationSeconds: elapsed.Seconds(),
		OfferedMessages: rate * float64(len(senders)) * b.cfg.Duration.Seconds(),
		Sent:            st.sent.Load(), Acked: st.acked.Load(), Received: st.received.Load(), ExpectedReceived: expected(),
		AckedPerSecond:  float64(st.acked.Load()) / elapsed.Seconds(),
		DeliveredPerSec: float64(st.received.Load()) / elapsed.Seconds(),
		SendToAck:       latencyOf(&st.ackLat), SendToReceive: latencyOf(&st.recvLat), Errors: errs,
	}
	if len(b.cfg.PIDs) > 0 {
		r.ServerCPUSeconds = use1.cpu - use0.cpu
		if r.Acked > 0 {
			r.ServerCPUPerMessageMs = 1000 * r.ServerCPUSeconds / float64(r.Acked)
			r.ServerCtxSwitchesPerMessage = float64(use1.ctxSwitches-use0.ctxSwitches) / float64(r.Acked)
		}
	}
	r.MeetsSLO, r.Miss = b.cfg.SLO.check(r)
	return r, nil
}

// warmup sends at the first rate for cfg.Warmup without counting anything:
// its messages carry step -1, which no step counts.
func (b *bench) warmup(ctx context.Context, senders []sender) {
	if b.cfg.Warmup <= 0 || len(senders) == 0 {
		return
	}
	b.cfg.Logger.Info("Warming up", "for", b.cfg.Warmup)
	st := &stepStats{errors: map[string]uint64{}}
	wctx, cancel := context.WithTimeout(ctx, b.cfg.Warmup)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Go(func() { b.sendLoop(wctx, -1, b.cfg.Rates[0], st, s) })
	}
	wg.Wait()
}

// check reports whether a step meets the SLO, and if not why.
func (s slo) check(r stepResult) (bool, string) {
	var miss []string
	// Counts, not rates: the measured period runs a little past the step's
	// duration (the last acknowledgements), which would lower a rate.
	if float64(r.Acked) < s.MinAcked*r.OfferedMessages {
		miss = append(miss, fmt.Sprintf("acked %d < %.0f%% of %.0f offered", r.Acked, 100*s.MinAcked, r.OfferedMessages))
	}
	if float64(r.Received) < s.MinAcked*float64(r.ExpectedReceived) {
		miss = append(miss, fmt.Sprintf("received %d < %.0f%% of %d", r.Received, 100*s.MinAcked, r.ExpectedReceived))
	}
	if p99 := time.Duration(r.SendToReceive.P99Ms * float64(time.Millisecond)); p99 > s.MaxP99 {
		miss = append(miss, fmt.Sprintf("send->recv p99 %v > %v", p99.Round(100*time.Microsecond), s.MaxP99))
	}
	return len(miss) == 0, strings.Join(miss, "; ")
}

// progressInterval is how often a running step logs its counters (at -v).
const progressInterval = 5 * time.Second

// progress logs the counters every progressInterval until ctx ends.
func (b *bench) progress(ctx context.Context, start time.Time, st *stepStats) {
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.cfg.Logger.Info("Sending", "elapsed", time.Since(start).Round(time.Second), "sent", st.sent.Load(),
				"acked", st.acked.Load(), "received", st.received.Load(), "ackP99", st.ackLat.Quantile(0.99))
		}
	}
}

// drain waits until every expected push has been received or cfg.Drain
// passes, so that late pushes still count.
func (b *bench) drain(ctx context.Context, st *stepStats, expected func() uint64) {
	deadline := time.Now().Add(b.cfg.Drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if st.received.Load() >= expected() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
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

// sendLoop sends at rate until ctx ends, one message in flight at a time;
// a slow ack makes the loop skip ticks, so the achieved rate shows the
// capacity (closed loop per sender, open across senders).
func (b *bench) sendLoop(ctx context.Context, step int, rate float64, st *stepStats, send sender) {
	if rate <= 0 {
		return
	}
	interval := time.Duration(float64(time.Second) / rate)
	// A random phase spreads the senders over the interval.
	select {
	case <-time.After(rand.N(interval)): //nolint:gosec // jitter, not a secret
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		now := time.Now()
		st.sent.Add(1)
		sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), client.DefaultRequestTimeout)
		err := send(sendCtx, b.content(step, now))
		cancel()
		if err != nil {
			st.recordError(err)
		} else {
			st.acked.Add(1)
			st.ackLat.Record(time.Since(now))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
