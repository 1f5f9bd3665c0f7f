package main

// Placement of clients and connections over several node URLs.
//
// Connection j is dialed to URL j mod U (U = number of URLs actually used,
// min(len(URLs), connections)), with the remaining URLs as failover targets
// in rotated order. Client i belongs to URL i mod U and logs in on one of
// that URL's connections, round-robin among them: the k-th client of URL u
// (k = i div U) uses connection u + U*(k mod m_u), where m_u is the number of
// connections of URL u. Clients are paired into conversations (2p, 2p+1), so
// the two sides of every pair are consecutive client numbers and therefore
// on different URLs whenever U >= 2; with three URLs the pairs cycle through
// the node pairs (0,1), (2,0), (1,2). With one URL, client i uses connection
// i mod connections, as before.

// placement is where every client and connection goes.
type placement struct {
	ConnURL    []int // connection -> URL index
	ClientConn []int // client -> connection index
}

// place computes the placement of clients over conns connections and urls
// URLs. It needs clients >= 1, 1 <= conns <= clients and urls >= 1.
func place(clients, conns, urls int) placement {
	u := min(urls, conns)
	p := placement{ConnURL: make([]int, conns), ClientConn: make([]int, clients)}
	for j := range conns {
		p.ConnURL[j] = j % u
	}
	for i := range clients {
		url, k := i%u, i/u
		perURL := (conns - url + u - 1) / u // connections j < conns with j mod u == url
		p.ClientConn[i] = url + u*(k%perURL)
	}
	return p
}

// clientURL is the URL index client i is connected to.
func (p placement) clientURL(i int) int { return p.ConnURL[p.ClientConn[i]] }

// placementSummary is the placement as reported with the result.
type placementSummary struct {
	ClientsPerURL []int `json:"clientsPerUrl"`
	ConnsPerURL   []int `json:"connectionsPerUrl"`
	Pairs         int   `json:"pairs"`
	CrossURLPairs int   `json:"crossUrlPairs"` // pairs whose two clients use different URLs
}

func (p placement) summary(urls int) placementSummary {
	s := placementSummary{ClientsPerURL: make([]int, urls), ConnsPerURL: make([]int, urls), Pairs: len(p.ClientConn) / 2}
	for _, u := range p.ConnURL {
		s.ConnsPerURL[u]++
	}
	for i := range p.ClientConn {
		s.ClientsPerURL[p.clientURL(i)]++
	}
	for i := range s.Pairs {
		if p.clientURL(2*i) != p.clientURL(2*i+1) {
			s.CrossURLPairs++
		}
	}
	return s
}
