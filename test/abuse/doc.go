// Package abuse holds attacks on a real imnode process that a hostile app
// user can run with only the public appId/appKey (issue 13), each with the
// bound the node must keep. The package-level tests of the limits live
// beside the code (node/abuse_*_test.go, node/storage, node/conversation);
// these measure what only a separate process shows, such as its RSS.
package abuse
