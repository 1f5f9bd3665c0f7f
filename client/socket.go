package client

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// socket is one WebSocket of a Conn. Its gws read loop calls the Event
// methods below; done closes when that loop has ended.
type socket struct {
	c    *Conn
	url  string // the WebSocket URL dialled
	ws   *gws.Conn
	text bool // Base64 text frames
	done chan struct{}
	// lastRecv is the time (UnixNano) of the last frame or pong.
	lastRecv  atomic.Int64
	goaway    atomic.Bool
	closeOnce sync.Once
	// closeErr is written once before done is closed.
	closeErr error
}

var _ gws.Event = (*socket)(nil)

// send encodes and writes a request frame.
func (s *socket) send(cmd *pb.GenericCommand) error {
	frame, _, err := protocol.Encode(cmd, s.c.cfg.Subprotocol)
	if err != nil {
		return err
	}
	if err := s.write(frame); err != nil {
		return fmt.Errorf("%s request: %w: %v", cmdName(cmd), ErrConnectionLost, err)
	}
	return nil
}

func (s *socket) write(frame []byte) error {
	op := gws.OpcodeBinary
	if s.text {
		op = gws.OpcodeText
	}
	return s.ws.WriteMessage(op, frame)
}

// close starts a normal close; done follows when the read loop ends.
func (s *socket) close() {
	s.closeOnce.Do(func() {
		_ = s.ws.WriteClose(1000, nil)
	})
}

// closeCode returns the WebSocket close code the server sent, 1006 if the
// socket ended without a close frame. Valid after done.
func (s *socket) closeCode() uint16 {
	if ce, ok := errors.AsType[*gws.CloseError](s.closeErr); ok {
		return ce.Code
	}
	return 1006
}

func (s *socket) closeReason() string {
	var ce *gws.CloseError
	if errors.As(s.closeErr, &ce) && len(ce.Reason) > 0 {
		return string(ce.Reason)
	}
	return "CLOSE_ABNORMAL"
}

func (s *socket) OnOpen(*gws.Conn) {}

func (s *socket) OnClose(_ *gws.Conn, err error) {
	s.closeErr = err
	close(s.done)
}

func (s *socket) OnPing(ws *gws.Conn, payload []byte) {
	s.lastRecv.Store(time.Now().UnixNano())
	_ = ws.WritePong(payload)
}

func (s *socket) OnPong(*gws.Conn, []byte) { s.lastRecv.Store(time.Now().UnixNano()) }

func (s *socket) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer func() { _ = m.Close() }()
	s.lastRecv.Store(time.Now().UnixNano())
	// Decode copies what it keeps (it unmarshals into fresh memory), so the
	// pooled buffer may be released by m.Close.
	cmd, err := protocol.Decode(m.Bytes(), m.Opcode == gws.OpcodeText)
	if err != nil {
		s.c.logger.Warn("Dropping undecodable frame", "err", err)
		return
	}
	s.c.handleFrame(s, cmd)
}
