package transport

import "context"

// Handler serves what peers send. Its methods are called concurrently from
// transport goroutines and must be safe for that.
type Handler interface {
	// HandleRequest answers one request. ctx is cancelled when the
	// request's deadline (the caller's, carried in the frame) passes or the
	// transport shuts down. The returned payload is owned by the transport
	// afterwards. Return Retry(err) for errors the caller may retry. At
	// most Config.MaxInflight requests per connection run at once; a slow
	// handler back-pressures that peer.
	HandleRequest(ctx context.Context, req *Request) ([]byte, error)
	// HandleMessage receives one one-way message. Messages from one peer
	// are delivered in the order sent, from that connection's reader
	// goroutine: it must not block (copy, enqueue and return), or it stalls
	// every message and request from that peer.
	HandleMessage(msg *Message)
}

// Request is an inbound request. The handler owns it and its payload.
type Request struct {
	From    string // sender's node id (from the handshake)
	Method  uint16
	Epoch   uint64 // sender's roster epoch; 0 if it sends none
	Payload []byte
}

// Message is an inbound one-way message. The handler owns it and its
// payload. Messages are not epoch-checked: Epoch is what the sender had,
// for the handler to judge.
type Message struct {
	From    string
	Method  uint16
	Epoch   uint64
	Payload []byte
}

// HandlerFuncs adapts two functions to Handler; a nil field rejects
// requests or drops messages.
type HandlerFuncs struct {
	Request func(ctx context.Context, req *Request) ([]byte, error)
	Message func(msg *Message)
}

var _ Handler = HandlerFuncs{}

// HandleRequest calls h.Request.
func (h HandlerFuncs) HandleRequest(ctx context.Context, req *Request) ([]byte, error) {
	if h.Request == nil {
		return nil, errNoHandler
	}
	return h.Request(ctx, req)
}

// HandleMessage calls h.Message.
func (h HandlerFuncs) HandleMessage(msg *Message) {
	if h.Message != nil {
		h.Message(msg)
	}
}
