package cluster_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/test/harness"
)

// TestClusterReceiptsSurviveKillingEveryNode: a receiver's delivery ack and
// read, sent to another node than the sender's, reach the sender as
// receipts, and the delivery and read pointers they recorded (committed
// without an fsync of their own, on the replicas of the receiver's client
// shard) survive every node being killed at once once a later message was
// acknowledged: its synced commits synced them too (docs/replication.md,
// "Receiver acks and reads").
func TestClusterReceiptsSurviveKillingEveryNode(t *testing.T) {
	c, ctx, tom, jerry := tomAndJerry(t, harness.Options{})
	conv, err := tom.cl.CreateConversation(ctx, client.CreateOptions{Members: ids(jerry), Name: "receipts", Unique: true})
	mustNoErr(t, err)
	cid := conv.ID()
	out := client.NewText("please confirm")
	out.Receipt = true
	sent, err := conv.Send(ctx, out)
	mustNoErr(t, err)
	got := take(t, jerry, "message", func(e client.MessageEvent) bool { return e.Message.ID == sent.ID }).Message

	// Jerry's SDK acks what it received: Tom gets a delivery receipt.
	take(t, tom, "delivery receipt", func(e client.ReceiptEvent) bool { return e.MessageID == sent.ID && !e.Read && e.From == jerry.id })
	mustNoErr(t, jerry.cl.Conversation(cid).Read(got))
	take(t, tom, "read receipt", func(e client.ReceiptEvent) bool { return e.MessageID == sent.ID && e.Read && e.From == jerry.id })
	// later, if not nil, is a message Jerry's SDK may have acked too.
	pointers := func(u *user, later *client.Message) error {
		delivered, read, err := u.cl.Conversation(cid).MaxRead(ctx)
		switch {
		case err != nil:
			return err
		case !read.Equal(sent.Timestamp):
			return fmt.Errorf("read %v, want %v", read, sent.Timestamp)
		case !delivered.Equal(sent.Timestamp) && (later == nil || !delivered.Equal(later.Timestamp)):
			return fmt.Errorf("delivered %v, want %v or the later message's", delivered, sent.Timestamp)
		}
		return nil
	}
	mustNoErr(t, pointers(tom, nil))
	later, err := conv.Send(ctx, client.NewText("synced after the acks"))
	mustNoErr(t, err)

	for _, nd := range c.Nodes() {
		nd.Kill(t)
	}
	// All at once, each joining the others on their old ports (a node that
	// was a member of a cluster waits for its seeds before it serves).
	var wg sync.WaitGroup
	failed := make([]error, len(c.Nodes()))
	for i, nd := range c.Nodes() {
		var others []string
		for _, o := range c.Nodes() {
			if o != nd {
				others = append(others, o.GossipAddr())
			}
		}
		nd.SetExtraArgs("--join", strings.Join(others, ","))
		wg.Go(func() { nd.RestartNoWait(&goroutineTB{T: t, err: &failed[i]}) })
	}
	wg.Wait()
	mustNoErr(t, errors.Join(failed...))
	c.WaitConverged(t)
	again := connectID(t, c, c.Node(2), c.Node(2), "Tom after the kill", tom.id)
	harness.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error { return pointers(again, later) })
}

// goroutineTB lets a harness call that may fail run on another goroutine
// than the test's: a failure is recorded in err and ends that goroutine,
// and the test checks err once the goroutine is done.
type goroutineTB struct {
	*testing.T
	err *error
}

func (g *goroutineTB) Fatal(args ...any) {
	*g.err = errors.New(fmt.Sprint(args...))
	runtime.Goexit()
}

func (g *goroutineTB) Fatalf(format string, args ...any) {
	*g.err = fmt.Errorf(format, args...)
	runtime.Goexit()
}
