package node

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// publicBase returns the scheme://host[:port] under which clients reach
// this node over HTTP, for the URLs it hands out (file URLs, /v1/route).
// With PublicURL set it is derived from it (ws -> http, wss -> https) and
// the request's Host header is never used. Otherwise the Host header is
// used only when AllowedHosts is empty (development) or lists its host
// name; ok is false for any other Host.
func (n *Node) publicBase(r *http.Request) (base string, ok bool) {
	if n.cfg.PublicURL != "" {
		u, err := url.Parse(n.cfg.PublicURL)
		if err == nil && u.Host != "" {
			scheme := "http"
			if u.Scheme == "wss" || u.Scheme == "https" {
				scheme = "https"
			}
			return scheme + "://" + u.Host, true
		}
	}
	if !n.hostAllowed(r.Host) {
		return "", false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host, true
}

// hostAllowed reports whether a request's Host header may name this node in
// URLs handed to clients: any host without AllowedHosts, else the listed
// host names (case-insensitive, port ignored).
func (n *Node) hostAllowed(hostport string) bool {
	if len(n.cfg.AllowedHosts) == 0 {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return slices.ContainsFunc(n.cfg.AllowedHosts, func(a string) bool { return strings.EqualFold(a, host) })
}

// validatePublicHosts requires --public-url or --allowed-hosts unless
// Insecure: without either, /v1/route and file URLs would carry whatever
// Host header a client sent.
func (c *Config) validatePublicHosts() error {
	if c.Insecure || c.PublicURL != "" || len(c.AllowedHosts) > 0 {
		return nil
	}
	return errors.New("node: --public-url or --allowed-hosts is required unless --insecure: without either, " +
		"/v1/route and file URLs would name whatever host a client's request says (see docs/security.md)")
}
