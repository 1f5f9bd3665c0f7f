package gateway

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/conversation"
	"github.com/imcluster/imcluster/node/limit"
	"github.com/imcluster/imcluster/node/protocol"
)

// limiters are the gateway's admission limits: connections per source
// address (node-wide: an address is known before its app) and logins per
// app and per (app, address) (the app's apps.Limits).
type limiters struct {
	connRate  *limit.Rate    // key: source address
	connsOpen *limit.Counter // key: source address
	maxConns  int

	// mu guards apps (app id -> its login limiters; one entry per
	// configured app that logged in).
	mu   sync.Mutex
	apps map[string]*appLimiters
}

type appLimiters struct {
	logins      *limit.Rate // key: "" (the whole app)
	loginsPerIP *limit.Rate // key: source address
	// The client rates (allowClient); key: client id, so that every
	// session of a client on this node shares one bucket.
	sends, history, ops *limit.Rate
}

// maxClientKeys bounds the client ids each client rate remembers (about
// 100 bytes each: at most ~26 MB per rate). Only clients that used some of
// their burst need remembering; when more do, the rate forgets full
// buckets first, then arbitrary ones (limit.Rate), erring towards allowing.
const maxClientKeys = 1 << 18

// perMinute returns a Rate of n per minute per key with bursts of n (a
// minute's worth); n negative turns it off.
func perMinute(n int, now func() time.Time) *limit.Rate {
	return limit.NewRate(float64(n)/60, n, maxClientKeys, now)
}

func newLimiters(cfg *Config) *limiters {
	return &limiters{
		connRate:  limit.NewRate(cfg.ConnectionsPerSecondPerIP, cfg.ConnectionBurstPerIP, 0, cfg.Now),
		connsOpen: limit.NewCounter(),
		maxConns:  cfg.MaxConnectionsPerIP,
		apps:      make(map[string]*appLimiters),
	}
}

func (l *limiters) app(a *apps.App, now func() time.Time) *appLimiters {
	l.mu.Lock()
	defer l.mu.Unlock()
	al, ok := l.apps[a.ID]
	if !ok {
		perSec, perMin := a.Limits.LoginsPerSecond, a.Limits.LoginsPerMinutePerIP
		lim := a.Limits
		al = &appLimiters{
			logins:      limit.NewRate(perSec, int(2*perSec), 1, now),
			loginsPerIP: limit.NewRate(float64(perMin)/60, perMin, 0, now),
			sends:       perMinute(lim.SendsPerMinutePerClient, now),
			history:     perMinute(lim.HistoryQueriesPerMinutePerClient, now),
			ops:         perMinute(lim.OpsPerMinutePerClient, now),
		}
		l.apps[a.ID] = al
	}
	return al
}

// admit decides whether a connection from addr may be upgraded; on true
// the caller must call l.connsOpen.Release(ip) when the connection ends.
// On false it has answered HTTP 429.
func (l *limiters) admit(w http.ResponseWriter, ip string) bool {
	if !l.connRate.Allow(ip) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many new connections from this address, retry later", http.StatusTooManyRequests)
		return false
	}
	if !l.connsOpen.Acquire(ip, l.maxConns) {
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many open connections from this address", http.StatusTooManyRequests)
		return false
	}
	return true
}

// allowLogin applies the app's login rates to a session/open from ip; it
// returns the error to answer, or nil.
func (l *limiters) allowLogin(a *apps.App, ip string, now func() time.Time) *protocol.Error {
	al := l.app(a, now)
	if !al.loginsPerIP.Allow(ip) {
		return protocol.ErrMessageSentQuotaExceeded.WithDetail(
			"too many logins from this address (limit %d per minute), retry later", a.Limits.LoginsPerMinutePerIP)
	}
	if !al.logins.Allow("") {
		return protocol.ErrMessageSentQuotaExceeded.WithDetail(
			"too many logins to this app on this node (limit %g per second), retry later", a.Limits.LoginsPerSecond)
	}
	return nil
}

// maxRefusalPause caps how long allowQuery and allowClient hold back a
// refusal.
const maxRefusalPause = time.Second

// holdBack waits until a refused session would have a token again (wait),
// at most maxRefusalPause, or until the node stops. It runs on the
// connection's worker: the socket's other commands and pushes wait too,
// so a client that retries the moment it is refused is paced to its
// rate, and one that sends without waiting fills its inbound queue and is
// closed (1008, Config.InboundQueue).
func (g *Gateway) holdBack(wait time.Duration) {
	t := time.NewTimer(min(wait, maxRefusalPause))
	select {
	case <-t.C:
	case <-g.ctx.Done():
		t.Stop()
	}
}

// allowQuery takes a token of the session's conv/query bucket (the app's
// QueriesPerSecondPerSession, bursts of twice it); it returns nil to run
// the query. A refusal runs nothing of the query (no parse, no scan) and
// allocates only its error frame. It is answered when the session would
// have a token again (holdBack).
func (g *Gateway) allowQuery(s *clientSession) *protocol.Error {
	perSecond := s.app.Limits.QueriesPerSecondPerSession
	ok, wait := s.queries.Take(g.cfg.Now(), perSecond, int(2*perSecond))
	if ok {
		return nil
	}
	g.metrics.rateLimited.WithLabelValues("query").Inc()
	g.holdBack(wait)
	return protocol.ErrConversationAPIQuota.WithDetail(
		"too many conversation queries from this session (limit %g per second); retry later", perSecond)
}

// allowClient takes a token of the client's bucket for a command of class
// (the app's per-client rates: sends, history queries, other operations;
// LeanCloud's client limits), shared by every session of the client on
// this node, and returns nil to run the command. A refusal runs nothing of
// the command (a send is not stored) and is answered when the client would
// have a token again (holdBack): 4116 for a send, 4318 otherwise, both
// temporary.
func (g *Gateway) allowClient(s *clientSession, class conversation.RateClass) *protocol.Error {
	var (
		r    *limit.Rate
		per  int
		kind string
		base *protocol.Error
	)
	switch class {
	case conversation.RateSend:
		r, per, kind, base = s.limits.sends, s.app.Limits.SendsPerMinutePerClient, "send", protocol.ErrMessageSentQuotaExceeded
	case conversation.RateHistory:
		r, per, kind, base = s.limits.history, s.app.Limits.HistoryQueriesPerMinutePerClient, "history", protocol.ErrConversationAPIQuota
	case conversation.RateOp:
		r, per, kind, base = s.limits.ops, s.app.Limits.OpsPerMinutePerClient, "op", protocol.ErrConversationAPIQuota
	default:
		return nil
	}
	ok, wait := r.Take(s.clientID)
	if ok {
		return nil
	}
	g.metrics.rateLimited.WithLabelValues(kind).Inc()
	g.holdBack(wait)
	return base.WithDetail("too many %s from this client (limit %d per minute); retry later", rateNames[class], per)
}

// rateNames names what each client rate counts, for refusals.
var rateNames = [...]string{
	conversation.RateSend:    "messages",
	conversation.RateHistory: "history queries",
	conversation.RateOp:      "conversation operations",
}

// remoteIP is the host part of a request's remote address.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
