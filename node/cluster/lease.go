package cluster

// serveLease answers a candidate's lease request.
func (c *Cluster) serveLease(from string, d *dec) ([]byte, error) { return nil, errNotImplemented }

// serveLeaseRelease drops the leases a holder gives up.
func (c *Cluster) serveLeaseRelease(from string, d *dec) ([]byte, error) { return nil, errNotImplemented }
