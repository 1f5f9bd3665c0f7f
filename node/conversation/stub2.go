package conversation

import "github.com/imcluster/imcluster/node/protocol"

func protocolStub() error { return protocol.ErrInternal.WithDetail("not implemented yet") }
