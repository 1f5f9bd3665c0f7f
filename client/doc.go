// Package client is a Go client for LeanCloud's realtime messaging protocol as
// served by imnode (and by LeanCloud itself). It mirrors the JavaScript SDK
// (leancloud-realtime) in Go idiom:
//
//	JS SDK                                Go
//	new Realtime({appId, RTMServers})     client.Dial(ctx, client.DefaultConfig(appID, urls...))
//	realtime.createIMClient('Tom')        conn.Login(ctx, "Tom", client.LoginOptions{...})
//	client.createConversation({...})      cl.CreateConversation(ctx, client.CreateOptions{...})
//	client.createChatRoom / ...Temporary  cl.CreateChatRoom, cl.CreateTemporaryConversation
//	client.getConversation(id)            cl.GetConversation(ctx, id)
//	client.getQuery().equalTo(...).find() cl.Query().EqualTo(...).Find(ctx)
//	conversation.send(new TextMessage())  conv.Send(ctx, client.NewText("hi"))
//	conversation.queryMessages({...})     conv.QueryMessages(ctx, client.HistoryQuery{...})
//	createMessagesIterator({limit})       conv.MessageIterator(limit).Next(ctx)
//	add / remove / join / quit            conv.Add, Remove, Join, Quit
//	conversation.save() after set()       conv.Update(ctx, map[string]any{"attr.x": v})
//	client.on(Event.MESSAGE, ...)         range cl.Events() (or LoginOptions.OnEvent)
//	client.close()                        cl.Close(ctx)
//
// Errors from the server are *Error values carrying the protocol's code,
// symbolic reason and detail; use errors.As, or errors.Is against the table in
// node/protocol (errors.Is(err, protocol.ErrConversationNotFound)).
//
// What it owns: the socket, request/response correlation by GenericCommand.i
// (with a 20 s default deadline like the SDK), the echo heartbeat and
// liveness timer, automatic reconnection with the JS SDK's backoff
// (1 s * 2^k, at most 5 min), re-login with r=true and the session token
// (retried without it on 4112), goaway, rotation of the server list,
// replay of missed reliable notifications, routing of pushes to the
// sessions sharing a socket by peerId, and the per-session event queue
// (bounded, drop-oldest; see IMClient.Events).
//
// What it must not do: import anything of the node except the wire codec in
// node/protocol, or keep global state. Every goroutine it starts belongs to a
// Conn and ends in Conn.Close.
package client
