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

// adminHandler serves the admin port (DESIGN.md section 7).
func (n *Node) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adminapi.PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET "+adminapi.PathReadyz, func(w http.ResponseWriter, _ *http.Request) {
		if !n.ready.Load() || n.draining.Load() || !n.cluster.Active() {
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
		adminapi.WriteJSON(w, http.StatusOK, n.cluster.ClusterStatus())
	})
	mux.HandleFunc("POST "+adminapi.PathDrain, func(w http.ResponseWriter, _ *http.Request) {
		op, err := n.cluster.Drain(func() {
			n.draining.Store(true)
			n.log.Info("Draining: sending goaway to clients and handing shards off")
			n.gateway.Goaway()
		})
		if err != nil {
			adminapi.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		adminapi.WriteJSON(w, http.StatusAccepted, adminapi.DrainStarted{Operation: op})
	})
	mux.HandleFunc("GET "+adminapi.PathDrain, func(w http.ResponseWriter, _ *http.Request) {
		p := n.cluster.DrainProgress()
		adminapi.WriteJSON(w, http.StatusOK, adminapi.DrainStatus{Operation: p.Operation, Started: p.Started, ShardsLeft: p.ShardsLeft, BytesLeft: p.BytesLeft, Done: p.Done})
	})
	mux.HandleFunc("DELETE "+adminapi.PathDrain, func(w http.ResponseWriter, _ *http.Request) {
		if err := n.cluster.CancelDrain(); err != nil {
			adminapi.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if n.draining.CompareAndSwap(true, false) {
			n.log.Info("Drain cancelled: accepting clients again")
			n.gateway.Resume()
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST "+adminapi.PathGoaway, func(w http.ResponseWriter, _ *http.Request) {
		if n.draining.CompareAndSwap(false, true) {
			n.log.Info("Going away: sending goaway to clients (replicas stay)")
			n.gateway.Goaway()
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST "+PathBackup, n.backup)
	mux.HandleFunc("POST "+adminapi.PathRemove, func(w http.ResponseWriter, r *http.Request) {
		var req adminapi.RemoveRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.Node == "" {
			adminapi.WriteError(w, http.StatusBadRequest, `body must be {"node": "<node id>"}`)
			return
		}
		if err := n.cluster.Remove(req.Node); err != nil {
			adminapi.WriteError(w, http.StatusConflict, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET "+adminapi.PathShards, func(w http.ResponseWriter, _ *http.Request) {
		st, err := n.cluster.ShardsStatus()
		if err != nil {
			adminapi.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		adminapi.WriteJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET "+adminapi.PathDebugMessages, func(w http.ResponseWriter, r *http.Request) {
		app, cid := r.URL.Query().Get("app"), r.URL.Query().Get("cid")
		if app == "" || cid == "" {
			adminapi.WriteError(w, http.StatusBadRequest, "app and cid are required")
			return
		}
		msgs, err := n.cluster.LocalMessages(app, cid)
		if err != nil {
			adminapi.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		adminapi.WriteJSON(w, http.StatusOK, msgs)
	})
	if f := n.cluster.Faults(); f != nil {
		mux.HandleFunc("POST "+adminapi.PathFaults, func(w http.ResponseWriter, r *http.Request) {
			var req adminapi.FaultRequest
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
				adminapi.WriteError(w, http.StatusBadRequest, "body must be a FaultRequest: "+err.Error())
				return
			}
			if req.Heal {
				f.Heal()
			}
			if len(req.Partition) > 0 {
				f.Partition(req.Partition...)
			}
			n.log.Warn("Fault injection", "partition", req.Partition, "heal", req.Heal)
			w.WriteHeader(http.StatusNoContent)
		})
	}
	return adminapi.RequireToken(n.cfg.AdminToken, mux)
}

func (n *Node) nodeStatus() adminapi.NodeStatus {
	st := n.cluster.NodeStatus()
	st.Version = Version
	st.Connections = n.gateway.Connections()
	return st
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
