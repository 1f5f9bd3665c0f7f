package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/imcluster/imcluster/node/adminapi"
	"github.com/imcluster/imcluster/node/transport"
)

// Settle polls the running nodes until the cluster is quiet: every node
// sees exactly the running nodes alive and active in the roster (left nodes
// aside), no shard moves or under-replicated shards, and every shard has at
// least min(r, running nodes) ready replicas whose digests are equal. It
// polls every interval until timeout and returns how long it took, or an
// error naming what was still unsettled at the deadline.
func Settle(ctx context.Context, nodes map[string]*adminapi.Client, r int, interval, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		why := settled(ctx, nodes, r)
		if why == "" {
			return time.Since(start), nil
		}
		if !transport.Sleep(ctx, interval) {
			return time.Since(start), fmt.Errorf("chaos: cluster not settled after %s: %s", timeout, why)
		}
	}
}

// settled returns "" when the cluster is settled, else the first reason it
// is not.
func settled(ctx context.Context, nodes map[string]*adminapi.Client, r int) string {
	ids := slices.Sorted(maps.Keys(nodes))
	shards := -1
	for _, id := range ids {
		cs, err := nodes[id].Cluster(ctx)
		if err != nil {
			return fmt.Sprintf("node %s: cluster: %v", id, err)
		}
		if why := rosterMismatch(cs, nodes); why != "" {
			return fmt.Sprintf("node %s sees %s", id, why)
		}
		if len(cs.UnderReplicated) > 0 || len(cs.Moves) > 0 {
			return fmt.Sprintf("node %s sees %d under-replicated shards and %d moves", id, len(cs.UnderReplicated), len(cs.Moves))
		}
		shards = cs.Shards
	}
	type replica struct{ node, digest string }
	byShard := map[int][]replica{}
	for _, id := range ids {
		ss, err := nodes[id].Shards(ctx)
		if err != nil {
			return fmt.Sprintf("node %s: shards: %v", id, err)
		}
		for _, s := range ss.Shards {
			if !s.Ready {
				return fmt.Sprintf("node %s: shard %d not ready", id, s.Shard)
			}
			byShard[s.Shard] = append(byShard[s.Shard], replica{id, s.Digest})
		}
	}
	want := min(r, len(ids))
	for s := range shards {
		reps := byShard[s]
		if len(reps) < want {
			return fmt.Sprintf("shard %d has %d replicas, want %d", s, len(reps), want)
		}
		for _, rep := range reps[1:] {
			if rep.digest != reps[0].digest {
				return fmt.Sprintf("shard %d digests differ: %s=%s %s=%s", s, reps[0].node, reps[0].digest, rep.node, rep.digest)
			}
		}
	}
	return ""
}

// rosterMismatch compares a node's cluster view with the running nodes.
func rosterMismatch(cs adminapi.ClusterStatus, nodes map[string]*adminapi.Client) string {
	for id := range nodes {
		m, ok := cs.Member(id)
		if !ok {
			return fmt.Sprintf("no member %s", id)
		}
		if !m.Alive || m.State != adminapi.StateActive {
			return fmt.Sprintf("member %s alive=%v state=%s", id, m.Alive, m.State)
		}
	}
	for _, m := range cs.Members {
		if _, running := nodes[m.ID]; !running && m.State.OwnsData() {
			return fmt.Sprintf("stopped member %s still in the roster (state %s)", m.ID, m.State)
		}
	}
	return ""
}

// Report is the outcome of Verify. Every count but StoredUnacked must be
// zero.
type Report struct {
	// Conversations and Acked are what was checked.
	Conversations int
	Acked         int
	// Replicas is the number of (conversation, replica) lists read.
	Replicas int
	// Lost counts acknowledged messages missing from every replica.
	Lost int
	// Missing counts (replica, acknowledged message) pairs where the
	// replica lacks the message (Lost messages included).
	Missing int
	// TimestampMismatches counts stored acknowledged messages whose
	// timestamp differs from the one in the ack.
	TimestampMismatches int
	// DuplicateIDs counts extra copies of a message id in one replica.
	DuplicateIDs int
	// DuplicatePayloads counts payloads stored under more than one id in
	// one replica: a retried send (same dedup token) stored twice.
	DuplicatePayloads int
	// OrderViolations counts adjacent stored messages not in strictly
	// increasing timestamp order.
	OrderViolations int
	// AckOrderViolations counts acknowledged messages whose timestamp is
	// not later than that of a message acknowledged before they were first
	// sent, in the same conversation.
	AckOrderViolations int
	// Divergent counts conversations whose replicas hold different lists.
	Divergent int
	// FewReplicas counts conversations with fewer replicas than expected.
	FewReplicas int
	// StoredUnacked counts stored messages never acknowledged to a sender
	// (attempts whose ack was lost or that ended with the run): allowed.
	StoredUnacked int
	// Problems describes the first violations, for the test log.
	Problems []string
}

// maxProblems caps Report.Problems so a broken run stays readable.
const maxProblems = 40

func (r *Report) problem(format string, args ...any) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Err returns nil if the report shows no violation, else an error listing
// the counts and the first problems.
func (r *Report) Err() error {
	bad := map[string]int{
		"lost": r.Lost, "missing on a replica": r.Missing, "timestamp mismatches": r.TimestampMismatches,
		"duplicate ids": r.DuplicateIDs, "duplicate payloads": r.DuplicatePayloads, "order violations": r.OrderViolations,
		"ack order violations": r.AckOrderViolations, "divergent conversations": r.Divergent,
		"conversations with too few replicas": r.FewReplicas,
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(bad)) {
		if bad[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d", k, bad[k]))
		}
	}
	if len(parts) == 0 {
		return nil
	}
	return errors.New("chaos: verification failed: " + strings.Join(parts, ", ") + "\n  " + strings.Join(r.Problems, "\n  "))
}

// Verify reads every conversation from every running node that replicates
// it (GET /admin/v1/debug/messages) and checks the acknowledged messages
// against each replica. r is the replication factor.
func Verify(ctx context.Context, nodes map[string]*adminapi.Client, app string, convs []string, acks []Ack, r int) (*Report, error) {
	rep := &Report{Conversations: len(convs), Acked: len(acks)}
	byConv := map[string][]Ack{}
	for _, a := range acks {
		byConv[a.Conv] = append(byConv[a.Conv], a)
	}
	ids := slices.Sorted(maps.Keys(nodes))
	want := min(r, len(ids))
	for _, cid := range convs {
		lists := map[string][]adminapi.DebugMessage{}
		for _, id := range ids {
			dm, err := debugMessages(ctx, nodes[id].BaseURL(), nodes[id].Token(), app, cid)
			if err != nil {
				return nil, fmt.Errorf("chaos: node %s: conversation %s: %w", id, cid, err)
			}
			if dm.Replica {
				lists[id] = dm.Messages
			}
		}
		rep.Replicas += len(lists)
		if len(lists) < want {
			rep.FewReplicas++
			rep.problem("conversation %s: %d replicas (%v), want %d", cid, len(lists), slices.Sorted(maps.Keys(lists)), want)
		}
		rep.checkConversation(cid, lists, byConv[cid])
	}
	return rep, nil
}

func (r *Report) checkConversation(cid string, lists map[string][]adminapi.DebugMessage, acks []Ack) {
	nodes := slices.Sorted(maps.Keys(lists))
	acked := make(map[string]Ack, len(acks))
	for _, a := range acks {
		acked[a.ID] = a
	}
	present := map[string]bool{}
	stored := map[string]bool{}
	for _, n := range nodes {
		msgs := lists[n]
		ids := make(map[string]int64, len(msgs))
		payloads := map[string]string{}
		for i, m := range msgs {
			stored[m.ID] = true
			if _, dup := ids[m.ID]; dup {
				r.DuplicateIDs++
				r.problem("%s on %s: id %s stored twice", cid, n, m.ID)
			}
			ids[m.ID] = m.Timestamp
			if other, dup := payloads[m.Data]; dup && other != m.ID && m.Data != "" {
				r.DuplicatePayloads++
				r.problem("%s on %s: payload %q (also its dedup token) stored twice: %s@%d and %s",
					cid, n, m.Data, other, ids[other], describe(m, acked))
			}
			payloads[m.Data] = m.ID
			if i > 0 && msgs[i-1].Timestamp >= m.Timestamp {
				r.OrderViolations++
				r.problem("%s on %s: %s follows %s", cid, n, describe(m, acked), describe(msgs[i-1], acked))
			}
		}
		for _, a := range acks {
			ts, ok := ids[a.ID]
			switch {
			case !ok:
				r.Missing++
				r.problem("%s on %s: acknowledged %s@%d (%s) missing", cid, n, a.ID, a.Timestamp, a.Payload)
			case ts != a.Timestamp:
				present[a.ID] = true
				r.TimestampMismatches++
				r.problem("%s on %s: %s stored @%d, acknowledged @%d", cid, n, a.ID, ts, a.Timestamp)
			default:
				present[a.ID] = true
			}
		}
		if len(nodes) > 0 && n != nodes[0] && !sameMessages(lists[nodes[0]], msgs) {
			r.Divergent++
			r.problem("%s: %s holds %d messages, %s holds %d, lists differ", cid, nodes[0], len(lists[nodes[0]]), n, len(msgs))
		}
	}
	for _, a := range acks {
		if !present[a.ID] {
			r.Lost++
			r.problem("%s: acknowledged %s@%d (%s) lost on every replica %v", cid, a.ID, a.Timestamp, a.Payload, nodes)
		}
	}
	for id := range stored {
		if _, ok := acked[id]; !ok {
			r.StoredUnacked++
		}
	}
	r.checkAckOrder(cid, acks)
}

// checkAckOrder: a message first sent after another was acknowledged must
// get a later timestamp (the conversation's timestamps are strictly
// increasing and an acknowledged message is durable).
func (r *Report) checkAckOrder(cid string, acks []Ack) {
	byAcked := slices.SortedFunc(slices.Values(acks), func(a, b Ack) int { return a.Acked.Compare(b.Acked) })
	bySent := slices.SortedFunc(slices.Values(acks), func(a, b Ack) int { return a.FirstSent.Compare(b.FirstSent) })
	var maxTS int64
	var maxAck Ack
	i := 0
	for _, b := range bySent {
		for i < len(byAcked) && byAcked[i].Acked.Before(b.FirstSent) {
			if byAcked[i].Timestamp > maxTS {
				maxTS, maxAck = byAcked[i].Timestamp, byAcked[i]
			}
			i++
		}
		if maxTS != 0 && b.Timestamp <= maxTS {
			r.AckOrderViolations++
			r.problem("%s: %s@%d (first sent %s) not after %s@%d (acknowledged %s)", cid, b.ID, b.Timestamp,
				b.FirstSent.Format(time.StampMilli), maxAck.ID, maxAck.Timestamp, maxAck.Acked.Format(time.StampMilli))
		}
	}
}

// describe formats a stored message with what its sender saw, if acked.
func describe(m adminapi.DebugMessage, acked map[string]Ack) string {
	a, ok := acked[m.ID]
	if !ok {
		return fmt.Sprintf("%s@%d (%q, not acknowledged)", m.ID, m.Timestamp, m.Data)
	}
	return fmt.Sprintf("%s@%d (%q, first sent %s, acknowledged %s via %s)", m.ID, m.Timestamp, m.Data,
		a.FirstSent.Format(time.StampMilli), a.Acked.Format(time.StampMilli), a.Via)
}

func sameMessages(a, b []adminapi.DebugMessage) bool {
	return slices.EqualFunc(a, b, func(x, y adminapi.DebugMessage) bool {
		return x.ID == y.ID && x.Timestamp == y.Timestamp && x.Data == y.Data
	})
}

// maxDebugBody caps one GET /admin/v1/debug/messages answer. The adminapi
// client reads at most 1 MiB, about 8000 messages: a long run writes more
// than that to one conversation, so the checker reads them itself.
const maxDebugBody = 256 << 20

// debugMessages is adminapi.Client.DebugMessages without the 1 MiB cap.
func debugMessages(ctx context.Context, base, token, app, cid string) (adminapi.DebugMessages, error) {
	var out adminapi.DebugMessages
	q := url.Values{"app": {app}, "cid": {cid}}
	ctx, cancel := context.WithTimeout(ctx, debugTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+adminapi.PathDebugMessages+"?"+q.Encode(), nil)
	if err != nil {
		return out, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out, err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDebugBody))
	if err != nil {
		return out, err
	}
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("GET %s: HTTP %d: %s", adminapi.PathDebugMessages, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("GET %s: %w", adminapi.PathDebugMessages, err)
	}
	return out, nil
}

// debugTimeout bounds one debug read: the node scans one conversation of
// at most a few hundred thousand messages from its local store.
const debugTimeout = 30 * time.Second
