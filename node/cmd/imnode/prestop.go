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

// prestop implements `imnode prestop`: the pod's preStop hook. It starts a
// drain through the local admin API (goaway to every client) and waits until
// the drain reports done or the timeout passes. It never fails the hook for
// a node that is already gone.
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
	if _, err := c.StartDrain(ctx); err != nil {
		return fmt.Errorf("prestop: start drain: %w", err)
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := c.Drain(ctx)
		if err == nil && st.Done {
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
