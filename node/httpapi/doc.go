// Package httpapi owns the HTTP endpoints on the client port: the small
// LeanCloud REST surface the realtime SDKs call (/v1/route, /1.1/rtm/sign,
// /1.1/rtm/notifications, /1.1/classes/_ConversationMemberInfo), the
// server-side REST API for app back ends (LeanCloud's IM REST API v1.2 and
// its v1.1 calls, served under both /1.2/rtm/... and /1.1/rtm/...,
// authenticated with the master key; one route table in rest_routes.go),
// the import endpoints `imnode import` drives, and the mount point of the
// storage-REST shim (node/storage).
//
// The server API runs every command as conversation.Caller with no session,
// which the engine treats as the app's back end (Caller.Server): it may read
// any history, list every conversation and manage any conversation, as
// LeanCloud's master key may.
//
// Every error is a JSON body {"code": <int>, "error": "<message>"} with a
// matching HTTP status, as the SDKs expect. Handlers hold no state of their
// own; the Server is safe for concurrent use.
package httpapi
