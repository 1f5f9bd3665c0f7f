package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/transport"
)

// LoadConfig shapes the senders. The zero value of every field but AppID
// means the default in its comment.
type LoadConfig struct {
	// AppID is the app the senders log in to. Required.
	AppID string
	// Senders is the number of concurrent senders, each a client id logged
	// in on its own connection. Zero means 8.
	Senders int
	// Conversations is the number of conversations. Zero means Senders.
	Conversations int
	// Members is the number of senders in each conversation (conversation
	// k has senders k, k+1, ... mod Senders). Zero means 3.
	Members int
	// Interval is the pause between two messages of one sender: it keeps
	// the load steady instead of saturating a small machine, so the faults,
	// not CPU starvation, are what the cluster has to survive. Zero means
	// 100 ms (8 senders: about 80 messages per second).
	Interval time.Duration
	// SendTimeout bounds one send attempt. Zero means the SDK's 20 s
	// (client.DefaultRequestTimeout): a send must be answered within it.
	SendTimeout time.Duration
	// RedialAfter: a sender whose connection has been down (or whose
	// session was closed) for this long closes it and dials afresh with the
	// current URLs, as an app would after a node was replaced. Zero means 5 s.
	RedialAfter time.Duration
	// Seed makes the choice of conversations reproducible.
	Seed uint64
	// Logger receives progress messages. Nil means discard.
	Logger *slog.Logger
}

func (c LoadConfig) withDefaults() LoadConfig {
	if c.Senders <= 0 {
		c.Senders = 8
	}
	if c.Conversations <= 0 {
		c.Conversations = c.Senders
	}
	if c.Members <= 0 {
		c.Members = 3
	}
	c.Members = min(c.Members, c.Senders)
	if c.Interval <= 0 {
		c.Interval = 100 * time.Millisecond
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = client.DefaultRequestTimeout
	}
	if c.RedialAfter <= 0 {
		c.RedialAfter = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Connection settings of the senders: reconnect quickly (the SDK's 1 s base
// would make a sender idle for most of a short fault) but still back off.
const (
	reconnectBase = 100 * time.Millisecond
	reconnectMax  = 2 * time.Second
	dialTimeout   = 10 * time.Second
	// retryBase and retryMax pace the retries of one message after a failed
	// attempt: min(retryBase * 2^k, retryMax).
	retryBase = 50 * time.Millisecond
	retryMax  = time.Second
)

// Load runs the senders. Each sender loops: pick one of its conversations,
// send a unique payload (also used as the dedup token), retry it until it is
// acknowledged, record the ack in the Ledger. Its methods are safe for
// concurrent use; Stop ends every goroutine it started.
type Load struct {
	cfg     LoadConfig
	ledger  *Ledger
	convs   []string
	senders []*sender
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// mu guards urls, the WebSocket URLs of the running nodes, and gate,
	// non-nil while the load is paused and closed by Resume.
	mu   sync.Mutex
	urls []string
	gate chan struct{}
}

// sender is one client id; only its goroutine touches it after StartLoad.
type sender struct {
	idx   int
	id    string
	convs []string
	conn  *client.Conn
	cl    *client.IMClient
	// down is when the sender first saw its connection unusable, zero while
	// it works.
	down time.Time
}

// StartLoad logs the senders in on the given WebSocket URLs, creates the
// conversations and starts sending. Sending stops with Stop (or ctx).
func StartLoad(ctx context.Context, cfg LoadConfig, urls []string, ledger *Ledger) (*Load, error) {
	cfg = cfg.withDefaults()
	if cfg.AppID == "" {
		return nil, errors.New("chaos: load: AppID is required")
	}
	l := &Load{cfg: cfg, ledger: ledger, urls: slices.Clone(urls)}
	for i := range cfg.Senders {
		s := &sender{idx: i, id: fmt.Sprintf("chaos-s%02d", i)}
		if err := l.connect(ctx, s); err != nil {
			l.closeAll()
			return nil, err
		}
		l.senders = append(l.senders, s)
	}
	for k := range cfg.Conversations {
		creator := l.senders[k%cfg.Senders]
		var members []string
		for j := 1; j < cfg.Members; j++ {
			members = append(members, l.senders[(k+j)%cfg.Senders].id)
		}
		cctx, cancel := context.WithTimeout(ctx, cfg.SendTimeout)
		conv, err := creator.cl.CreateConversation(cctx, client.CreateOptions{Name: fmt.Sprintf("chaos-c%02d", k), Members: members})
		cancel()
		if err != nil {
			l.closeAll()
			return nil, fmt.Errorf("chaos: create conversation %d: %w", k, err)
		}
		l.convs = append(l.convs, conv.ID())
		creator.convs = append(creator.convs, conv.ID())
		for j := 1; j < cfg.Members; j++ {
			s := l.senders[(k+j)%cfg.Senders]
			s.convs = append(s.convs, conv.ID())
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	for _, s := range l.senders {
		l.wg.Go(func() { l.run(runCtx, s) })
	}
	return l, nil
}

// Conversations returns the ids of the conversations the load writes to.
func (l *Load) Conversations() []string { return slices.Clone(l.convs) }

// SetURLs replaces the URLs used when a sender dials a new connection (the
// existing connections keep the list they were made with).
func (l *Load) SetURLs(urls []string) {
	l.mu.Lock()
	l.urls = slices.Clone(urls)
	l.mu.Unlock()
}

// Pause makes every sender stop before its next message; a message in
// flight is still retried until acknowledged. Poll the cluster (Settle) to
// know when the writes have drained.
func (l *Load) Pause() {
	l.mu.Lock()
	if l.gate == nil {
		l.gate = make(chan struct{})
	}
	l.mu.Unlock()
}

// Resume lets the senders go on after Pause.
func (l *Load) Resume() {
	l.mu.Lock()
	if l.gate != nil {
		close(l.gate)
		l.gate = nil
	}
	l.mu.Unlock()
}

// waitGate blocks while the load is paused; false means ctx ended.
func (l *Load) waitGate(ctx context.Context) bool {
	l.mu.Lock()
	g := l.gate
	l.mu.Unlock()
	if g == nil {
		return true
	}
	select {
	case <-ctx.Done():
		return false
	case <-g:
		return true
	}
}

// Stop ends the senders, waits for them and closes their connections.
// Payloads in flight are counted as abandoned. Idempotent.
func (l *Load) Stop() {
	l.cancel()
	l.wg.Wait()
	l.closeAll()
}

func (l *Load) closeAll() {
	for _, s := range l.senders {
		s.close()
	}
}

// urlsFor returns the current URLs rotated so that sender i starts at node
// i mod n: the senders spread over the nodes.
func (l *Load) urlsFor(i int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.urls) == 0 {
		return nil
	}
	k := i % len(l.urls)
	return append(slices.Clone(l.urls[k:]), l.urls[:k]...)
}

// connect dials and logs s in.
func (l *Load) connect(ctx context.Context, s *sender) error {
	urls := l.urlsFor(s.idx)
	if len(urls) == 0 {
		return errors.New("chaos: load: no node URLs")
	}
	cfg := client.DefaultConfig(l.cfg.AppID, urls...)
	cfg.ReconnectBaseDelay, cfg.ReconnectMaxDelay = reconnectBase, reconnectMax
	cfg.DialTimeout = dialTimeout
	cfg.RequestTimeout = l.cfg.SendTimeout
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := client.Dial(dctx, cfg)
	if err != nil {
		return fmt.Errorf("chaos: dial %s: %w", s.id, err)
	}
	lctx, lcancel := context.WithTimeout(ctx, l.cfg.SendTimeout)
	defer lcancel()
	cl, err := conn.Login(lctx, s.id, client.LoginOptions{OnEvent: l.onEvent})
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("chaos: login %s on %s: %w", s.id, urls[0], err)
	}
	s.conn, s.cl, s.down = conn, cl, time.Time{}
	return nil
}

// onEvent counts connection events; pushed messages are dropped (the
// receivers' acks are sent by the client anyway). It runs on the socket's
// read goroutine and must not block.
func (l *Load) onEvent(ev client.Event) {
	switch e := ev.(type) {
	case client.DisconnectEvent:
		if e.Goaway {
			l.ledger.Event("goaway")
		} else {
			l.ledger.Event("disconnect")
		}
	case client.ReconnectEvent:
		l.ledger.Event("reconnect")
	case client.CloseEvent:
		l.ledger.Event(fmt.Sprintf("session closed %d", e.Code))
	default:
	}
}

// via returns the URL s's connection uses now: the client rotates the one
// that worked to the end of its list.
func (s *sender) via() string {
	urls := s.conn.URLs()
	if len(urls) == 0 {
		return ""
	}
	return urls[len(urls)-1]
}

func (s *sender) close() {
	if s.conn != nil {
		_ = s.conn.Close()
	}
	s.conn, s.cl = nil, nil
}

func (l *Load) run(ctx context.Context, s *sender) {
	rng := rand.New(rand.NewPCG(l.cfg.Seed, uint64(s.idx))) //nolint:gosec // picks conversations, not secrets
	tick := time.NewTicker(l.cfg.Interval)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !l.waitGate(ctx) {
			return
		}
		if len(s.convs) == 0 {
			continue
		}
		cid := s.convs[rng.IntN(len(s.convs))]
		l.deliver(ctx, s, cid, fmt.Sprintf("%s#%d", s.id, seq))
	}
}

// deliver sends payload to cid until it is acknowledged, rejected or ctx
// ends. Every attempt of one payload carries the same dedup token.
func (l *Load) deliver(ctx context.Context, s *sender, cid, payload string) {
	first := time.Now()
	for attempt := 0; ; attempt++ {
		if attempt > 0 && !transport.Sleep(ctx, backoff(attempt-1)) {
			l.ledger.Abandoned()
			return
		}
		if ctx.Err() != nil {
			l.ledger.Abandoned()
			return
		}
		if s.cl == nil {
			started := time.Now()
			if err := l.connect(ctx, s); err != nil {
				if ctx.Err() == nil {
					l.ledger.Failed(err, s.id, "", "login", started)
				}
				continue
			}
		}
		l.ledger.Attempt()
		started := time.Now()
		sctx, cancel := context.WithTimeout(ctx, l.cfg.SendTimeout)
		m, err := s.cl.Conversation(cid).Send(sctx, &client.OutgoingMessage{Content: payload, DedupToken: payload})
		cancel()
		if err == nil {
			s.down = time.Time{}
			l.ledger.Acked(Ack{Conv: cid, ID: m.ID, Timestamp: m.Timestamp.UnixMilli(), Payload: payload,
				FirstSent: first, Acked: time.Now(), Via: s.via()})
			return
		}
		if ctx.Err() != nil {
			l.ledger.Abandoned()
			return
		}
		class := l.ledger.Failed(err, s.id, s.via(), "direct", started)
		if strings.HasPrefix(class, ErrClassRejected) {
			l.cfg.Logger.Error("Send rejected", "peer", s.id, "conv", cid, "payload", payload, "err", err)
			l.ledger.Abandoned()
			return
		}
		l.maybeRedial(s, class)
	}
}

// maybeRedial drops s's connection when its session is gone or its socket
// has been down for RedialAfter; the next attempt dials afresh.
func (l *Load) maybeRedial(s *sender, class string) {
	if class == ErrClassClosed {
		s.close()
		return
	}
	if s.conn.Connected() {
		s.down = time.Time{}
		return
	}
	if s.down.IsZero() {
		s.down = time.Now()
		return
	}
	if time.Since(s.down) >= l.cfg.RedialAfter {
		l.cfg.Logger.Info("Redialing", "peer", s.id, "downFor", time.Since(s.down).Round(time.Millisecond).String())
		l.ledger.Event("redial")
		s.close()
	}
}

func backoff(attempt int) time.Duration {
	d := retryBase
	for range min(attempt, 10) {
		d *= 2
	}
	return min(d, retryMax)
}
