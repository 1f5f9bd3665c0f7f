package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol"
	"github.com/imcluster/imcluster/node/protocol/pb"
)

// restTimeout bounds one REST call (router, notifications, member info).
const restTimeout = 10 * time.Second

// maxNotificationPages bounds one notification catch-up after a reconnect;
// a server that keeps answering hasMore cannot make the client loop forever.
const maxNotificationPages = 50

// RESTError is a non-2xx answer of a REST endpoint ({code, error}).
type RESTError struct {
	Status  int
	Code    int
	Message string
}

func (e *RESTError) Error() string {
	return fmt.Sprintf("client: rest: HTTP %d, code %d: %s", e.Status, e.Code, e.Message)
}

// restBases returns the REST base URLs to try, in order: Config.Server,
// then the HTTP form of the WebSocket URL the client is connected to (an
// imcluster node serves the REST API on its client port), so REST calls
// reach a live node after a failover even when Server names a single node,
// and work when only URLs are configured.
func (c *Conn) restBases() []string {
	var out []string
	if c.cfg.Server != "" {
		out = append(out, c.cfg.Server)
	}
	c.mu.Lock()
	s := c.mu.sock
	c.mu.Unlock()
	if s != nil {
		if b, ok := httpBase(s.url); ok && !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return out
}

// httpBase returns scheme://host of the HTTP URL matching a WebSocket URL.
func httpBase(wsURL string) (string, bool) {
	u, err := url.Parse(wsURL)
	if err != nil || u.Host == "" {
		return "", false
	}
	switch u.Scheme {
	case "ws":
		return "http://" + u.Host, true
	case "wss":
		return "https://" + u.Host, true
	}
	return "", false
}

// restGet performs GET <base><path>?query with the app headers and decodes
// the JSON answer into out. It tries the next base (restBases) only when a
// base cannot be reached; an HTTP error answer is final.
func (c *Conn) restGet(ctx context.Context, path string, query url.Values, header http.Header, out any) error {
	bases := c.restBases()
	if len(bases) == 0 {
		return errors.New("client: rest: no REST server: set Config.Server")
	}
	var errs []error
	for _, base := range bases {
		err := c.restGetFrom(ctx, base, path, query, header, out)
		if !errors.Is(err, errUnreachable) {
			return err
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("client: rest: %w", errors.Join(errs...))
}

// errUnreachable marks a REST base that did not answer.
var errUnreachable = errors.New("unreachable")

// restGetFrom performs the GET against one base, within restTimeout.
func (c *Conn) restGetFrom(ctx context.Context, base, path string, query url.Values, header http.Header, out any) error {
	ctx, cancel := context.WithTimeout(ctx, restTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path+"?"+query.Encode(), nil)
	if err != nil {
		return fmt.Errorf("client: rest: %w", err)
	}
	req.Header.Set("X-LC-Id", c.cfg.AppID)
	req.Header.Set("X-LC-Key", c.cfg.AppKey)
	maps.Copy(req.Header, header)
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %w: %w", base, errUnreachable, err)
	}
	return decodeREST(resp, path, out)
}

// decodeREST reads a REST answer into out, or the error it carries.
func decodeREST(resp *http.Response, path string, out any) error {
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("client: rest: read %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		re := &RESTError{Status: resp.StatusCode}
		var e struct {
			Code  int    `json:"code"`
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil {
			re.Code, re.Message = e.Code, e.Error
		}
		return re
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("client: rest: decode %s: %w", path, err)
	}
	return nil
}

// routeURLs asks the router (GET /v1/route) for the WebSocket URLs, as the
// SDK does when no RTMServers are given.
func (c *Conn) routeURLs(ctx context.Context) ([]string, error) {
	var r struct {
		Server    string `json:"server"`
		Secondary string `json:"secondary"`
	}
	q := url.Values{"appId": {c.cfg.AppID}, "_t": {strconv.FormatInt(time.Now().UnixMilli(), 10)}}
	if err := c.restGet(ctx, "/v1/route", q, nil, &r); err != nil {
		return nil, err
	}
	var urls []string
	for _, u := range []string{r.Server, r.Secondary} {
		if u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("%w: /v1/route returned no server", ErrUnexpectedResponse)
	}
	return urls, nil
}

// syncNotifications fetches the reliable notifications missed while the
// socket was down (GET /1.1/rtm/notifications) and replays them as events,
// like the JS SDK after a reconnect. It needs Config.Server, a session
// token and a cursor from an earlier login.
func (cl *IMClient) syncNotifications(ctx context.Context) error {
	cl.mu.Lock()
	st, cursor := cl.mu.st, cl.mu.notifCursor
	cl.mu.Unlock()
	if len(cl.conn.restBases()) == 0 || st == "" || cursor == 0 {
		return nil
	}
	for range maxNotificationPages {
		var page struct {
			Notifications []map[string]any `json:"notifications"`
			HasMore       bool             `json:"hasMore"`
		}
		q := url.Values{"client_id": {cl.id}, "start_ts": {strconv.FormatInt(cursor, 10)}, "notification_type": {"permanent"}}
		if err := cl.conn.restGet(ctx, "/1.1/rtm/notifications", q, http.Header{"X-LC-IM-Session-Token": {st}}, &page); err != nil {
			return err
		}
		for _, n := range page.Notifications {
			cmd := notificationCommand(n)
			if cmd == nil {
				continue
			}
			if ts := cmd.GetServerTs(); ts > cursor {
				cursor = ts
			}
			cl.handlePush(cmd)
		}
		if !page.HasMore || len(page.Notifications) == 0 {
			return nil
		}
	}
	return nil
}

// notificationCommand rebuilds the push frame of one JS-shaped
// notification; nil for shapes it does not know.
func notificationCommand(n map[string]any) *pb.GenericCommand {
	cmdV, ok := pb.CommandType_value[str(n["cmd"])]
	if !ok {
		return nil
	}
	cmd := &pb.GenericCommand{Cmd: pb.CommandType(cmdV).Enum(), Service: proto.Int32(protocol.ServiceIM),
		NotificationType: proto.Int32(protocol.NotificationReliable)}
	if ts, ok := n["serverTs"].(float64); ok {
		cmd.ServerTs = new(int64(ts))
	}
	if op := str(n["op"]); op != "" {
		v, ok := pb.OpType_value[op]
		if !ok {
			return nil
		}
		cmd.Op = pb.OpType(v).Enum()
	}
	switch cmd.GetCmd() {
	case pb.CommandType_conv:
		cm := &pb.ConvCommand{M: strs(n["m"])}
		setStr(&cm.Cid, n["cid"])
		setStr(&cm.InitBy, n["initBy"])
		setStr(&cm.Udate, n["udate"])
		if a, ok := n["attr"].(map[string]any); ok {
			cm.Attr = protocol.JSON(str(a["data"]))
		}
		if a, ok := n["attrModified"].(map[string]any); ok {
			cm.AttrModified = protocol.JSON(str(a["data"]))
		}
		if info, ok := n["info"].(map[string]any); ok {
			cm.Info = &pb.ConvMemberInfo{Pid: new(str(info["pid"])), Role: new(str(info["role"]))}
		}
		cmd.ConvMessage = cm
	case pb.CommandType_rcp:
		r := &pb.RcpCommand{Read: new(boolean(n["read"]))}
		setStr(&r.Id, n["id"])
		setStr(&r.Cid, n["cid"])
		setStr(&r.From, n["from"])
		if t, ok := n["t"].(float64); ok {
			r.T = new(int64(t))
		}
		cmd.RcpMessage = r
	default:
		return nil
	}
	return cmd
}

func setStr(dst **string, v any) {
	if s, ok := v.(string); ok {
		*dst = new(s)
	}
}

// MemberInfo is one member's role (GET /1.1/classes/_ConversationMemberInfo).
type MemberInfo struct {
	ClientID string `json:"clientId"`
	Role     string `json:"role"`
}

// MemberRoles returns the roles recorded for the conversation's members
// over REST (needs Config.Server). The creator is the Owner even when not
// listed; everybody else not listed is a Member.
func (c *Conversation) MemberRoles(ctx context.Context) ([]MemberInfo, error) {
	st, _ := c.cl.SessionToken()
	where, err := json.Marshal(map[string]string{"cid": c.id})
	if err != nil {
		return nil, err
	}
	var out struct {
		Results []MemberInfo `json:"results"`
	}
	q := url.Values{"where": {string(where)}, "client_id": {c.cl.id}}
	if err := c.cl.conn.restGet(ctx, "/1.1/classes/_ConversationMemberInfo", q, http.Header{"X-LC-IM-Session-Token": {st}}, &out); err != nil {
		return nil, err
	}
	return out.Results, nil
}
