// Package session owns session tokens: the opaque `st` a client receives in
// session/opened and presents on automatic re-login, to
// /1.1/rtm/notifications and to the member-info REST endpoint.
//
// A token is bound to (app, clientId) and remembers the session's tag and
// deviceId, because the JS SDK does not resend them on re-login. Tokens are
// persisted in the client's shard so that a restarted node still accepts
// them. Tokens is safe for concurrent use.
package session
