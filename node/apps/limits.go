package apps

import (
	"errors"
	"fmt"
)

// Limits bound what the clients of one app may cost a node. They are
// enforced per node (a client spread over N nodes gets N times the rates).
// Every zero field takes its value from DefaultLimits; a negative rate or
// count turns that limit off. The JSON names are the keys of an app's
// "limits" object in the apps file (docs/security.md lists them).
type Limits struct {
	// LoginsPerSecond is the session/open rate of the whole app on one
	// node; a login beyond it is answered 4116 (retry later). Bursts of
	// twice the rate pass.
	LoginsPerSecond float64 `json:"loginsPerSecond,omitempty"`
	// LoginsPerMinutePerIP is the session/open rate of one source address.
	LoginsPerMinutePerIP int `json:"loginsPerMinutePerIP,omitempty"`
	// AccountRequestsPerMinutePerIP is the rate of storage sign-ups and
	// logins (POST /1.1/users, /1.1/login: each costs a password hash)
	// from one source address; beyond it HTTP 429.
	AccountRequestsPerMinutePerIP int `json:"accountRequestsPerMinutePerIP,omitempty"`
	// FailedLoginsPerUser is how many wrong passwords one username may see
	// in FailedLoginWindow; beyond it /1.1/login answers 219 (HTTP 429)
	// until the window has passed.
	FailedLoginsPerUser int `json:"failedLoginsPerUser,omitempty"`
	// ConcurrentQueries bounds the conv/query commands of the app running
	// at once on one node; one beyond it is answered 4318. A quarter of
	// them (at least 1) may be app-wide queries that no index serves.
	ConcurrentQueries int `json:"concurrentQueries,omitempty"`
	// QueriesPerSecondPerSession is the conv/query rate of one client
	// session, with bursts of twice the rate (at least 1). A query beyond
	// it is answered 4318 without being run, and the answer is held back
	// until the session would have a query again (at most 1 s), which
	// paces a client that retries at once.
	QueriesPerSecondPerSession float64 `json:"queriesPerSecondPerSession,omitempty"`
	// SendsPerMinutePerClient is the rate of direct commands (messages,
	// chat-room messages included) of one client id on one node, all its
	// sessions together, with bursts of a minute's worth. A send beyond
	// it is answered 4116 without being stored.
	SendsPerMinutePerClient int `json:"sendsPerMinutePerClient,omitempty"`
	// HistoryQueriesPerMinutePerClient is the rate of logs commands
	// (message history) of one client id on one node, with bursts of a
	// minute's worth; beyond it 4318.
	HistoryQueriesPerMinutePerClient int `json:"historyQueriesPerMinutePerClient,omitempty"`
	// OpsPerMinutePerClient is the rate of one client id's other
	// conversation operations on one node (creating, joining, leaving,
	// updating, muting, member and blacklist operations, recalls and edits,
	// online-status queries), with bursts of a minute's worth; beyond it
	// 4318. Receiver acks, read receipts, keep-alives and conv/query (which
	// has its own rate) do not count.
	OpsPerMinutePerClient int `json:"opsPerMinutePerClient,omitempty"`
	// QueryScanBudget bounds the conversation records one conv/query may
	// examine; a query that needs more is answered 4310 naming the budget.
	QueryScanBudget int `json:"queryScanBudget,omitempty"`
}

// FailedLoginWindow is the window of Limits.FailedLoginsPerUser (LeanCloud
// locks a username for 15 minutes after repeated wrong passwords).
const FailedLoginWindow = 15 * 60 // seconds

// DefaultLimits are the limits of an app that sets none. Their reasons:
// 200 logins/s per node is far above a real app's reconnect storm after a
// node restart spread over several nodes; 300 logins/min per address leave
// room for a NAT of many users; 30 account requests/min per address bound
// the password-hashing CPU one address can use (~2 cores·s/min); ten wrong
// passwords per 15 minutes per username is LeanCloud's order; 60 sends,
// 120 history queries and 30 other operations per minute per client are
// LeanCloud's published client limits; 8 concurrent
// queries per app and node keep one app from taking every core; 20
// queries/s per session (bursts of 40) are many times what a chat client
// asks while a user pages through conversation lists; 5000
// records per query is what one query can examine in well under a second.
var DefaultLimits = Limits{
	LoginsPerSecond:                  200,
	LoginsPerMinutePerIP:             300,
	AccountRequestsPerMinutePerIP:    30,
	FailedLoginsPerUser:              10,
	ConcurrentQueries:                8,
	QueriesPerSecondPerSession:       20,
	SendsPerMinutePerClient:          60,
	HistoryQueriesPerMinutePerClient: 120,
	OpsPerMinutePerClient:            30,
	QueryScanBudget:                  5000,
}

// withDefaults returns l with every zero field set from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.LoginsPerSecond == 0 {
		l.LoginsPerSecond = d.LoginsPerSecond
	}
	if l.QueriesPerSecondPerSession == 0 {
		l.QueriesPerSecondPerSession = d.QueriesPerSecondPerSession
	}
	setDefault(&l.LoginsPerMinutePerIP, d.LoginsPerMinutePerIP)
	setDefault(&l.AccountRequestsPerMinutePerIP, d.AccountRequestsPerMinutePerIP)
	setDefault(&l.FailedLoginsPerUser, d.FailedLoginsPerUser)
	setDefault(&l.ConcurrentQueries, d.ConcurrentQueries)
	setDefault(&l.SendsPerMinutePerClient, d.SendsPerMinutePerClient)
	setDefault(&l.HistoryQueriesPerMinutePerClient, d.HistoryQueriesPerMinutePerClient)
	setDefault(&l.OpsPerMinutePerClient, d.OpsPerMinutePerClient)
	setDefault(&l.QueryScanBudget, d.QueryScanBudget)
	return l
}

func setDefault(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

// validate reports a limit that makes no sense.
func (l Limits) validate() error {
	if l.QueryScanBudget < 0 {
		return errors.New("queryScanBudget must not be negative (a query must be able to examine something)")
	}
	if l.QueryScanBudget > 10_000_000 {
		return fmt.Errorf("queryScanBudget %d is above 10000000", l.QueryScanBudget)
	}
	return nil
}
