// Package apps owns tenant configuration: the apps a node serves (appId,
// appKey, masterKey and per-app feature switches), the built-in development
// app, and LeanCloud's HMAC-SHA1 signature scheme for logins and conversation
// actions.
//
// A Registry is immutable after construction and safe for concurrent use.
package apps
