package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/imcluster/imcluster/node/adminapi"
)

// prestop implements `imnode prestop`: the pod's preStop hook. It sends
// goaway to every client through the local admin API and waits until they
// left or the timeout passes. It does not hand shards off: a stopping pod
// comes back (restart, upgrade, rescheduling) and keeps its replicas; scale
// down drains explicitly (POST /admin/v1/drain) before the pod is deleted.
func prestop(args []string) error {
	fs := flag.NewFlagSet("imnode prestop", flag.ContinueOnError)
	addr := fs.String("admin-addr", "127.0.0.1:8081", "the node's admin address")
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait for clients to leave")
	token := fs.String("admin-token", os.Getenv("IMNODE_ADMIN_TOKEN"), "admin bearer token (default $IMNODE_ADMIN_TOKEN)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c := adminapi.NewClient("http://"+*addr, *token, &http.Client{Timeout: 5 * time.Second})
	if err := c.Goaway(ctx); err != nil {
		return fmt.Errorf("prestop: goaway: %w", err)
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := c.Node(ctx)
		if err == nil && st.Connections == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				fmt.Fprintln(os.Stderr, "imnode prestop: clients still connected at the timeout; stopping anyway")
				return nil
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}
