// Package storage is a small shim of LeanCloud's storage REST API (the
// "/1.1/..." endpoints of leancloud-storage, the JavaScript SDK's AV object).
//
// The realtime SDK's rich-media messages need a saved AV.File, and
// createIMClient(user) needs an AV.User session token; an app that switches to
// imcluster by changing only its server options therefore needs these calls to
// work against our node. The shim implements exactly what the official SDK
// sends for them (test/compat/STORAGE-REST.md records the wire format):
//
//	POST   /1.1/users                 sign up        -> 201 {objectId, createdAt, sessionToken}
//	POST   /1.1/login                 log in         -> 200 user with sessionToken
//	GET    /1.1/users/me              current user   (X-LC-Session)
//	GET    /1.1/users/{id}            public user record
//	POST   /1.1/fileTokens            start an upload -> {objectId, token, provider:"s3", upload_url, url, ...}
//	PUT    /1.1/fileUpload/{id}       the upload itself (authorised by ?token=, no app headers, like S3)
//	POST   /1.1/fileCallback          {token, result} finishes or abandons the upload
//	POST   /1.1/files                 external-URL file (AV.File.withURL(...).save())
//	GET    /1.1/files/{id}            file record
//	DELETE /1.1/files/{id}            delete a file
//	GET    /1.1/files/{id}/content    the uploaded bytes (public, like a CDN URL)
//
// Requests are authenticated as LeanCloud does: X-LC-Id plus either X-LC-Key
// ("appKey" or "masterKey,master") or X-LC-Sign ("md5(ts+key),ts[,master]").
// Errors are JSON {code, error} with a matching HTTP status. A write refused
// because the disk is low (the store's free-space guard, or too few of the
// shard's replicas with space) is answered 507 with code 4301 and the
// protocol's "storage full" text, as the REST API answers a refused send.
//
// Records live in the node's store under the FamUser and FamFile key families
// of one configured shard. Passwords are hashed with PBKDF2-HMAC-SHA256.
package storage
