package gateway

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/imcluster/imcluster/node/apps"
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
		al = &appLimiters{
			logins:      limit.NewRate(perSec, int(2*perSec), 1, now),
			loginsPerIP: limit.NewRate(float64(perMin)/60, perMin, 0, now),
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

// maxQueryPause caps how long allowQuery holds back a refusal.
const maxQueryPause = time.Second

// allowQuery takes a token of the session's conv/query bucket (the app's
// QueriesPerSecondPerSession, bursts of twice it); it returns nil to run
// the query. A refusal runs nothing of the query (no parse, no scan) and
// allocates only its error frame. It is answered when the session would
// have a token again (at most maxQueryPause later, sooner if the node
// stops): the connection's worker waits, so a client that sends its next
// query when the refusal arrives is paced to the rate, and one that keeps
// sending without waiting fills its inbound queue and is closed (1008, see
// Config.InboundQueue). Pushes to the socket wait with it.
func (g *Gateway) allowQuery(s *clientSession) *protocol.Error {
	perSecond := s.app.Limits.QueriesPerSecondPerSession
	ok, wait := s.queries.Take(g.cfg.Now(), perSecond, int(2*perSecond))
	if ok {
		return nil
	}
	g.metrics.rateLimited.WithLabelValues("query").Inc()
	t := time.NewTimer(min(wait, maxQueryPause))
	select {
	case <-t.C:
	case <-g.ctx.Done():
		t.Stop()
	}
	return protocol.ErrConversationAPIQuota.WithDetail(
		"too many conversation queries from this session (limit %g per second); retry later", perSecond)
}

// remoteIP is the host part of a request's remote address.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
