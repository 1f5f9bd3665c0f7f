package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func newTestServer(t *testing.T, token string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET "+PathReadyz, func(w http.ResponseWriter, _ *http.Request) {
		WriteError(w, http.StatusServiceUnavailable, "catching up")
	})
	mux.HandleFunc("GET "+PathNode, func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, NodeStatus{ID: "imc-1", State: StateJoining, Version: "v1", Epoch: 7,
			ShardsReplicated: 12, Receiving: []ShardTransfer{{Shard: 3, From: "imc-0", BytesRemaining: 10, KeysRemaining: 2}}})
	})
	mux.HandleFunc("GET "+PathCluster, func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, ClusterStatus{Epoch: 7, Shards: 16, ReplicationFactor: 3,
			Members: []Member{{ID: "imc-0", State: StateActive, Alive: true, Shards: 16}}, UnderReplicated: []int{3}})
	})
	mux.HandleFunc("POST "+PathDrain, func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusAccepted, DrainStarted{Operation: "drain-1"})
	})
	mux.HandleFunc("GET "+PathDrain, func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, DrainStatus{Operation: "drain-1", Started: true, ShardsLeft: 2, BytesLeft: 100})
	})
	mux.HandleFunc("POST "+PathRemove, func(w http.ResponseWriter, r *http.Request) {
		var req RemoveRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Node == "" {
			WriteError(w, http.StatusBadRequest, "node is required")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(RequireToken(token, mux))
	t.Cleanup(srv.Close)
	return srv
}

func TestAdminAPIClientRoundTrip(t *testing.T) {
	srv := newTestServer(t, "s3cret")
	c := NewClient(srv.URL+"/", "s3cret", srv.Client())
	ctx := t.Context()

	n, err := c.Node(ctx)
	if err != nil {
		t.Fatalf("Node: %v", err)
	}
	if n.ID != "imc-1" || n.State != StateJoining || n.CaughtUp() || n.Receiving[0].BytesRemaining != 10 {
		t.Fatalf("Node = %+v", n)
	}
	cl, err := c.Cluster(ctx)
	if err != nil {
		t.Fatalf("Cluster: %v", err)
	}
	if m, ok := cl.Member("imc-0"); !ok || !m.Alive || cl.UnderReplicated[0] != 3 {
		t.Fatalf("Cluster = %+v", cl)
	}
	op, err := c.StartDrain(ctx)
	if err != nil || op.Operation != "drain-1" {
		t.Fatalf("StartDrain = %+v, %v", op, err)
	}
	d, err := c.Drain(ctx)
	if err != nil || d.Done || d.ShardsLeft != 2 {
		t.Fatalf("Drain = %+v, %v", d, err)
	}
	if err := c.Remove(ctx, "imc-2"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := c.Healthz(ctx); err != nil {
		t.Fatalf("Healthz: %v", err)
	}
	var se *StatusError
	if err := c.Readyz(ctx); !errors.As(err, &se) || se.Code != http.StatusServiceUnavailable || se.Message != "catching up" {
		t.Fatalf("Readyz = %v", err)
	}
	if err := c.Remove(ctx, ""); !errors.As(err, &se) || se.Code != http.StatusBadRequest {
		t.Fatalf("Remove(\"\") = %v", err)
	}
}

func TestAdminAPIClientUnauthorized(t *testing.T) {
	srv := newTestServer(t, "s3cret")
	c := NewClient(srv.URL, "wrong", srv.Client())
	if _, err := c.Node(t.Context()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Node with a wrong token = %v, want ErrUnauthorized", err)
	}
	// Probes carry no token.
	if err := NewClient(srv.URL, "", srv.Client()).Healthz(t.Context()); err != nil {
		t.Fatalf("Healthz without token: %v", err)
	}
}

func TestAdminAPIClientDeadline(t *testing.T) {
	srv := newTestServer(t, "")
	c := NewClient(srv.URL, "", srv.Client())
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.do(ctx, http.MethodGet, "/slow", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow request = %v, want deadline exceeded", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("deadline not honoured: took %v", time.Since(start))
	}
}
