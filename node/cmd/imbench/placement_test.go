package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

func TestParseFlagsURLs(t *testing.T) {
	a, b, c := "ws://127.0.0.1:4000/", "ws://127.0.0.1:4002/", "wss://node-3.example:443/ws"
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"single url", []string{"--url", a}, []string{a}},
		{"repeated url", []string{"--url", a, "--url", b, "--url", c}, []string{a, b, c}},
		{"urls list", []string{"--urls", a + "," + b + "," + c}, []string{a, b, c}},
		{"comma url with spaces and empty items", []string{"--url", " " + a + " ,, " + b + ","}, []string{a, b}},
		{"url and urls mixed in order", []string{"--url", c, "--urls", a + "," + b}, []string{c, a, b}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := parseFlags(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.URLs, tc.want) {
				t.Fatalf("URLs = %q, want %q", cfg.URLs, tc.want)
			}
		})
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no url", []string{"--clients", "10"}, "at least one --url"},
		{"only commas", []string{"--urls", ",,"}, "at least one --url"},
		{"http scheme", []string{"--url", "http://127.0.0.1:4000/"}, "not a ws:// or wss:// URL"},
		{"no host", []string{"--urls", "ws://127.0.0.1:1/,ws:///x"}, "not a ws:// or wss:// URL"},
		{"stray argument", []string{"--url", "ws://127.0.0.1:1/", "ws://127.0.0.1:2/"}, "unexpected arguments"},
		{"one client", []string{"--url", "ws://127.0.0.1:1/", "--clients", "1"}, "--clients >= 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseFlags(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParseFlagsClampsConns(t *testing.T) {
	cfg, _, err := parseFlags([]string{"--url", "ws://127.0.0.1:1/", "--clients", "10", "--conns", "50"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Conns != 10 {
		t.Fatalf("Conns = %d, want 10", cfg.Conns)
	}
}

// TestPlaceSingleURL keeps the single-URL behaviour: client i on
// connection i mod conns.
func TestPlaceSingleURL(t *testing.T) {
	p := place(1000, 100, 1)
	for j, u := range p.ConnURL {
		if u != 0 {
			t.Fatalf("conn %d on URL %d", j, u)
		}
	}
	for i, c := range p.ClientConn {
		if c != i%100 {
			t.Fatalf("client %d on conn %d, want %d", i, c, i%100)
		}
	}
}

// TestPlaceSpreadsPairs checks the invariants for many shapes: every
// connection serves at least one client, connections and clients are
// balanced over the URLs (within one), clients of a URL are balanced over
// its connections (within one), and with two or more usable URLs every pair
// is split across URLs.
func TestPlaceSpreadsPairs(t *testing.T) {
	for clients := 2; clients <= 40; clients++ {
		for conns := 1; conns <= clients; conns++ {
			for urls := 1; urls <= 5; urls++ {
				p := place(clients, conns, urls)
				s := p.summary(urls)
				used := min(urls, conns)
				perConn := make([]int, conns)
				for i, c := range p.ClientConn {
					if c < 0 || c >= conns {
						t.Fatalf("place(%d, %d, %d): client %d on conn %d", clients, conns, urls, i, c)
					}
					perConn[c]++
				}
				// Per URL: the client counts of its connections differ by at most one.
				for u := range used {
					lo, hi := clients, 0
					for j, n := range perConn {
						if p.ConnURL[j] == u {
							lo, hi = min(lo, n), max(hi, n)
						}
					}
					if lo == 0 || hi-lo > 1 {
						t.Fatalf("place(%d, %d, %d): URL %d connections carry %d..%d clients", clients, conns, urls, u, lo, hi)
					}
				}
				for _, counts := range [][]int{s.ClientsPerURL[:used], s.ConnsPerURL[:used]} {
					if slices.Max(counts)-slices.Min(counts) > 1 {
						t.Fatalf("place(%d, %d, %d): unbalanced %v", clients, conns, urls, counts)
					}
				}
				if wantCross := map[bool]int{true: s.Pairs, false: 0}[used >= 2]; s.CrossURLPairs != wantCross || s.Pairs != clients/2 {
					t.Fatalf("place(%d, %d, %d): %d of %d pairs across URLs, want %d", clients, conns, urls, s.CrossURLPairs, s.Pairs, wantCross)
				}
			}
		}
	}
}

// TestPlaceBenchmarkShape pins the documented shape of the three-node
// benchmark: 1000 clients on 1000 connections over three URLs.
func TestPlaceBenchmarkShape(t *testing.T) {
	p := place(1000, 1000, 3)
	for i, c := range p.ClientConn {
		if c != i {
			t.Fatalf("client %d on conn %d, want its own connection", i, c)
		}
	}
	s := p.summary(3)
	if !slices.Equal(s.ClientsPerURL, []int{334, 333, 333}) || !slices.Equal(s.ConnsPerURL, []int{334, 333, 333}) ||
		s.Pairs != 500 || s.CrossURLPairs != 500 {
		t.Fatalf("summary = %+v", s)
	}
	// Pairs cycle through the node pairs (0,1), (2,0), (1,2).
	for pair, want := range [][2]int{{0, 1}, {2, 0}, {1, 2}, {0, 1}} {
		if got := [2]int{p.clientURL(2 * pair), p.clientURL(2*pair + 1)}; got != want {
			t.Fatalf("pair %d on URLs %v, want %v", pair, got, want)
		}
	}
}
