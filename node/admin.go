package node

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/imcluster/imcluster/node/adminapi"
)

// adminHandler serves the admin port (DESIGN.md section 7). A single node is
// its whole cluster: it replicates and coordinates every shard, and draining
// it means telling its clients to go away.
func (n *Node) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adminapi.PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET "+adminapi.PathReadyz, func(w http.ResponseWriter, _ *http.Request) {
		if !n.ready.Load() || n.draining.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET "+adminapi.PathMetrics, promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
	mux.HandleFunc("GET "+adminapi.PathNode, func(w http.ResponseWriter, _ *http.Request) {
		adminapi.WriteJSON(w, http.StatusOK, n.nodeStatus())
	})
	mux.HandleFunc("GET "+adminapi.PathCluster, func(w http.ResponseWriter, _ *http.Request) {
		st := n.nodeStatus()
		adminapi.WriteJSON(w, http.StatusOK, adminapi.ClusterStatus{
			Epoch:             st.Epoch,
			Shards:            n.cfg.Shards,
			ReplicationFactor: 1,
			Members: []adminapi.Member{{
				ID: st.ID, State: st.State, Alive: true, Version: Version, Shards: n.cfg.Shards,
				ClientAddr: n.clientLn.Addr().String(), AdminAddr: n.adminLn.Addr().String(),
			}},
		})
	})
	mux.HandleFunc("POST "+adminapi.PathDrain, func(w http.ResponseWriter, _ *http.Request) {
		if n.draining.CompareAndSwap(false, true) {
			n.log.Info("Draining: sending goaway to clients")
			n.gateway.Goaway()
		}
		adminapi.WriteJSON(w, http.StatusAccepted, adminapi.DrainStarted{Operation: "drain-" + n.cfg.NodeID})
	})
	mux.HandleFunc("GET "+adminapi.PathDrain, func(w http.ResponseWriter, _ *http.Request) {
		started := n.draining.Load()
		op := ""
		if started {
			op = "drain-" + n.cfg.NodeID
		}
		adminapi.WriteJSON(w, http.StatusOK, adminapi.DrainStatus{Operation: op, Started: started, Done: started && n.gateway.Connections() == 0})
	})
	mux.HandleFunc("DELETE "+adminapi.PathDrain, func(w http.ResponseWriter, _ *http.Request) {
		if n.draining.CompareAndSwap(true, false) {
			n.log.Info("Drain cancelled: accepting clients again")
			n.gateway.Resume()
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST "+PathBackup, n.backup)
	mux.HandleFunc("POST "+adminapi.PathRemove, func(w http.ResponseWriter, _ *http.Request) {
		adminapi.WriteError(w, http.StatusConflict, "a single node has no peers to remove")
	})
	return adminapi.RequireToken(n.cfg.AdminToken, mux)
}

func (n *Node) nodeStatus() adminapi.NodeStatus {
	state := adminapi.StateActive
	if n.draining.Load() {
		state = adminapi.StateDraining
	}
	return adminapi.NodeStatus{
		ID:                n.cfg.NodeID,
		State:             state,
		Version:           Version,
		Epoch:             1,
		ShardsReplicated:  n.cfg.Shards,
		ShardsCoordinated: n.cfg.Shards,
		Connections:       n.gateway.Connections(),
	}
}

// PathBackup serves POST {"dir": "/absolute/path"}: a consistent online
// checkpoint of the node's database into dir, which must not exist and
// should be on the data volume (files are hard-linked there). The checkpoint
// is a complete data directory: start imnode on it to restore.
const PathBackup = "/admin/v1/backup"

// BackupRequest is the body of POST /admin/v1/backup.
type BackupRequest struct {
	Dir string `json:"dir"`
}

func (n *Node) backup(w http.ResponseWriter, r *http.Request) {
	var req BackupRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		adminapi.WriteError(w, http.StatusBadRequest, "body must be JSON {\"dir\": \"/absolute/path\"}")
		return
	}
	if !filepath.IsAbs(req.Dir) {
		adminapi.WriteError(w, http.StatusBadRequest, "dir must be an absolute path")
		return
	}
	if _, err := os.Stat(req.Dir); err == nil {
		adminapi.WriteError(w, http.StatusConflict, "dir already exists: choose a new directory per backup")
		return
	}
	n.log.Info("Writing backup checkpoint", "dir", req.Dir)
	if err := n.store.Checkpoint(req.Dir); err != nil {
		n.log.Error("Backup failed", "dir", req.Dir, "err", err)
		adminapi.WriteError(w, http.StatusInternalServerError, err.Error())
		return
	}
	adminapi.WriteJSON(w, http.StatusOK, req)
}
