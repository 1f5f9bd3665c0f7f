// Package httpapi owns the HTTP endpoints on the client port: the small
// LeanCloud REST surface the realtime SDKs call (/v1/route, /1.1/rtm/sign,
// /1.1/rtm/notifications, /1.1/classes/_ConversationMemberInfo), the
// server-side REST API for app back ends (/1.1/rtm/..., authenticated with the
// master key), and the mount point of the storage-REST shim (node/storage).
//
// Every error is a JSON body {"code": <int>, "error": "<message>"} with a
// matching HTTP status, as the SDKs expect. Handlers hold no state of their
// own; the Server is safe for concurrent use.
package httpapi
