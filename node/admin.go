package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/imcluster/imcluster/node/adminapi"
)

// adminHandler serves the admin port (docs/architecture.md, docs/operator.md).
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
			if v := req.DiskFreeMiB; v != nil {
				n.faultDiskFree.Store(*v)
				n.log.Warn("Fault injection: the data disk's free space", "freeMiB", *v)
			}
			n.log.Warn("Fault injection", "partition", req.Partition, "heal", req.Heal)
			w.WriteHeader(http.StatusNoContent)
		})
	}
	registerPprof(mux)
	return adminapi.RequireToken(n.cfg.AdminToken, mux)
}

func (n *Node) nodeStatus() adminapi.NodeStatus {
	st := n.cluster.NodeStatus()
	st.Version = Version
	st.Connections = n.gateway.Connections()
	st.GossipKeys = n.gossipKeys()
	d := n.store.Disk()
	st.Disk = adminapi.DiskStatus{FreeBytes: d.Free, ReserveBytes: d.Reserve, Low: d.Low}
	if p := n.creds.peer; p != nil {
		st.PeerCAs, st.PeerCertNotAfter = p.CAFingerprints(), p.NotAfter()
	}
	return st
}

// PathBackup serves POST {"dir": "name"}: a consistent online checkpoint
// of the node's database into a new directory below Config.BackupDir (a
// relative name, or an absolute path inside BackupDir), which should be on
// the data volume (files are hard-linked there). The checkpoint is a
// complete data directory: start imnode on it to restore. Without
// BackupDir every backup is refused (403).
const PathBackup = "/admin/v1/backup"

// BackupRequest is the body of POST /admin/v1/backup.
type BackupRequest struct {
	Dir string `json:"dir"`
}

func (n *Node) backup(w http.ResponseWriter, r *http.Request) {
	if n.cfg.BackupDir == "" {
		adminapi.WriteError(w, http.StatusForbidden, "backups are disabled: start the node with --backup-dir")
		return
	}
	var req BackupRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || req.Dir == "" {
		adminapi.WriteError(w, http.StatusBadRequest, `body must be JSON {"dir": "<new directory below the backup dir>"}`)
		return
	}
	dir, err := n.backupPath(req.Dir)
	if err != nil {
		adminapi.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, err := os.Lstat(dir); err == nil {
		adminapi.WriteError(w, http.StatusConflict, "dir already exists: choose a new directory per backup")
		return
	}
	n.log.Info("Writing backup checkpoint", "dir", dir)
	if err := n.store.Checkpoint(dir); err != nil {
		n.log.Error("Backup failed", "dir", dir, "err", err)
		adminapi.WriteError(w, http.StatusInternalServerError, err.Error())
		return
	}
	adminapi.WriteJSON(w, http.StatusOK, BackupRequest{Dir: dir})
}

// errBackupPath refuses a backup directory outside the backup dir.
var errBackupPath = errors.New("dir must be a new directory below the node's backup dir")

// backupPath resolves a requested backup directory: it must lie strictly
// below BackupDir, also after resolving symbolic links of its parent (a link
// inside the backup dir must not lead out of it).
func (n *Node) backupPath(dir string) (string, error) {
	base, err := filepath.Abs(n.cfg.BackupDir)
	if err != nil {
		return "", fmt.Errorf("backup dir: %w", err)
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(base, dir)
	}
	dir = filepath.Clean(dir)
	if !within(base, dir) {
		return "", errBackupPath
	}
	realBase, err := filepath.EvalSymlinks(base)
	if err != nil {
		return "", fmt.Errorf("backup dir: %w", err)
	}
	realParent, err := filepath.EvalSymlinks(filepath.Dir(dir))
	if err != nil {
		return "", fmt.Errorf("%w: parent: %w", errBackupPath, err)
	}
	if realParent != realBase && !within(realBase, realParent) {
		return "", errBackupPath
	}
	return filepath.Join(realParent, filepath.Base(dir)), nil
}

// within reports whether path lies strictly below base (both clean).
func within(base, path string) bool {
	rel, err := filepath.Rel(base, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// maxProfileSeconds bounds a CPU profile or execution trace asked for on
// the admin port (each holds a goroutine and a buffer for its duration).
const maxProfileSeconds = 60

// registerPprof serves Go's profiles under /debug/pprof/ (behind the admin
// token like every admin path but health and metrics).
func registerPprof(mux *http.ServeMux) {
	bounded := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if v := r.URL.Query().Get("seconds"); v != "" {
				if s, err := strconv.Atoi(v); err != nil || s < 1 || s > maxProfileSeconds {
					adminapi.WriteError(w, http.StatusBadRequest, fmt.Sprintf("seconds must be 1 to %d", maxProfileSeconds))
					return
				}
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /debug/pprof/", bounded(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", bounded(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", bounded(pprof.Trace))
}
