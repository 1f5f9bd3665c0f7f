package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/imcluster/imcluster/client"
	"github.com/imcluster/imcluster/node/protocol"
)

// Tom chats with Jerry, as in the first chapter of the LeanCloud guide.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := client.Dial(ctx, client.DefaultConfig("imcluster-dev", "ws://127.0.0.1:8080/"))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	tom, err := conn.Login(ctx, "Tom", client.LoginOptions{})
	if err != nil {
		log.Fatal(err)
	}
	conv, err := tom.CreateConversation(ctx, client.CreateOptions{Members: []string{"Jerry"}, Name: "Tom & Jerry", Unique: true})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := conv.Send(ctx, client.NewText("Jerry，起床了！")); err != nil {
		log.Fatal(err)
	}
	for ev := range tom.Events() {
		switch e := ev.(type) {
		case client.MessageEvent:
			fmt.Println(e.Message.From, e.Message.Content)
		case client.MembershipEvent:
			fmt.Println(e.Kind, e.Members, e.By)
		case client.ConflictEvent:
			return // logged in elsewhere with the same tag
		}
	}
}

func ExampleConversationQuery() {
	var tom *client.IMClient // logged in
	ctx := context.Background()
	convs, err := client.Or(
		tom.Query().EqualTo("attr.type", "private"),
		tom.Query().StartsWith("name", "教育"),
	).Descending("createdAt").Limit(20).Compact(true).Find(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range convs {
		fmt.Println(c.ID(), c.Info().Name)
	}
}

func ExampleConversation_MessageIterator() {
	var conv *client.Conversation
	ctx := context.Background()
	it := conv.MessageIterator(10)
	for {
		page, done, err := it.Next(ctx) // oldest first within a page
		if err != nil {
			log.Fatal(err)
		}
		for _, m := range page {
			fmt.Println(m.Timestamp, m.From, m.Content)
		}
		if done {
			break
		}
	}
}

func ExampleError() {
	var conv *client.Conversation
	_, err := conv.Send(context.Background(), client.NewText("hi"))
	if se, ok := errors.AsType[*client.Error](err); ok {
		fmt.Println(se.Code, se.Reason, se.Detail)
	}
	if errors.Is(err, protocol.ErrInvalidMessagingTarget) {
		fmt.Println("not a member")
	}
}
