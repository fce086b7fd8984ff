package router

import (
	"bytes"
	"strings"
)

// plainAnswer is an upstream's answer header that the relay can pass on as
// it came, without http.ReadResponse: "HTTP/1.1", a final status other
// than 204 and 304, one Content-Length, well-formed "Name: value" lines and
// no field that concerns the connection or the framing (Connection,
// Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade). That is
// what a service instance answers nearly always, and parsing it into an
// http.Response and writing it back was about a tenth of the relay's CPU.
// Anything else, or any doubt, goes to http.ReadResponse: the check is
// stricter than the standard library (FuzzPlainAnswer holds it to that).
type plainAnswer struct {
	code   int
	length int64  // of the body
	fields []byte // the header's field lines, CRLF-terminated, as received
	size   int    // of the whole header, blank line included
}

// parsePlainAnswer parses a complete answer header at the start of b (the
// answer to a request that is not HEAD); ok false when the answer is not
// plain.
func parsePlainAnswer(b []byte) (a plainAnswer, ok bool) {
	const proto = "HTTP/1.1 "
	if len(b) < len(proto)+5 || string(b[:len(proto)]) != proto {
		return a, false
	}
	i := len(proto)
	for _, c := range b[i : i+3] {
		if c < '0' || c > '9' {
			return a, false
		}
		a.code = a.code*10 + int(c-'0')
	}
	if a.code < 200 || a.code > 599 || a.code == 204 || a.code == 304 {
		return a, false
	}
	i += 3
	if b[i] == ' ' {
		i++
		for i < len(b) && b[i] >= ' ' && b[i] <= '~' {
			i++ // the reason phrase: the relay writes its own
		}
	}
	if !bytes.HasPrefix(b[i:], crlf) {
		return a, false
	}
	i += 2
	start := i
	a.length = -1
	for {
		if bytes.HasPrefix(b[i:], crlf) {
			a.fields, a.size = b[start:i], i+2
			return a, a.length >= 0
		}
		end := bytes.Index(b[i:], crlf)
		if end < 0 {
			return a, false
		}
		line := b[i : i+end]
		i += end + 2
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return a, false // no name, or a continuation line
		}
		name, value := line[:colon], line[colon+1:]
		for _, c := range name {
			if !tokenByte(c) {
				return a, false
			}
		}
		for _, c := range value {
			if (c < ' ' || c > '~') && c != '\t' {
				return a, false
			}
		}
		switch {
		case equalFold(name, "content-length"):
			if a.length >= 0 {
				return a, false
			}
			v := bytes.Trim(value, " \t")
			if len(v) == 0 || len(v) > 15 {
				return a, false
			}
			a.length = 0
			for _, c := range v {
				if c < '0' || c > '9' {
					return a, false
				}
				a.length = a.length*10 + int64(c-'0')
			}
		case equalFold(name, "connection"), equalFold(name, "keep-alive"), equalFold(name, "proxy-connection"),
			equalFold(name, "proxy-authenticate"), equalFold(name, "proxy-authorization"), equalFold(name, "te"),
			equalFold(name, "trailer"), equalFold(name, "transfer-encoding"), equalFold(name, "upgrade"):
			return a, false
		}
	}
}

var crlf = []byte("\r\n")

// tokenByte: RFC 9110 tchar.
func tokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// equalFold compares b with lower, an ASCII lower-case string.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// plainRequest is a client's request header that the relay can pass on
// as it came, without http.ReadRequest: GET or HEAD, an origin-form target
// of plain characters (no percent-encoding), "HTTP/1.1", one valid Host,
// well-formed "Name: value" lines and no field that concerns the body, the
// connection or forwarding (Content-Length, Transfer-Encoding, Expect,
// Connection, Keep-Alive, Proxy-*, TE, Trailer, Upgrade, Forwarded,
// X-Forwarded-*), nor Pragma (which net/http turns into Cache-Control).
// Such a request has no body, so nothing about its framing is left to
// interpret: request smuggling stays net/http's to refuse. Anything else
// goes to http.ReadRequest (FuzzPlainRequest holds this parser to it).
type plainRequest struct {
	method string
	target []byte // as received; its path ends at '?'
	host   []byte
	fields []byte // the header's field lines, CRLF-terminated, Host included
	size   int    // of the whole header, blank line included
}

// parsePlainRequest parses a complete request header at the start of b;
// ok false when the request is not plain.
func parsePlainRequest(b []byte) (r plainRequest, ok bool) {
	switch {
	case bytes.HasPrefix(b, []byte("GET /")):
		r.method = "GET"
	case bytes.HasPrefix(b, []byte("HEAD /")):
		r.method = "HEAD"
	default:
		return r, false
	}
	i := len(r.method) + 1
	end := bytes.IndexByte(b[i:], ' ')
	if end < 0 {
		return r, false
	}
	r.target = b[i : i+end]
	for _, c := range r.target {
		if !targetByte(c) {
			return r, false
		}
	}
	i += end + 1
	if !bytes.HasPrefix(b[i:], []byte("HTTP/1.1\r\n")) {
		return r, false
	}
	i += len("HTTP/1.1\r\n")
	start := i
	for {
		if bytes.HasPrefix(b[i:], crlf) {
			r.fields, r.size = b[start:i], i+2
			return r, r.host != nil
		}
		end := bytes.Index(b[i:], crlf)
		if end < 0 {
			return r, false
		}
		line := b[i : i+end]
		i += end + 2
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return r, false
		}
		name, value := line[:colon], line[colon+1:]
		for _, c := range name {
			if !tokenByte(c) {
				return r, false
			}
		}
		for _, c := range value {
			if (c < ' ' || c > '~') && c != '\t' {
				return r, false
			}
		}
		switch {
		case equalFold(name, "host"):
			v := bytes.Trim(value, " \t")
			if r.host != nil || len(v) == 0 {
				return r, false
			}
			for _, c := range v {
				if !hostByte(c) {
					return r, false
				}
			}
			r.host = v
		case equalFold(name, "content-length"), equalFold(name, "transfer-encoding"), equalFold(name, "expect"),
			equalFold(name, "connection"), equalFold(name, "keep-alive"), equalFold(name, "proxy-connection"),
			equalFold(name, "proxy-authenticate"), equalFold(name, "proxy-authorization"), equalFold(name, "te"),
			equalFold(name, "trailer"), equalFold(name, "upgrade"), equalFold(name, "forwarded"),
			equalFold(name, "x-forwarded-for"), equalFold(name, "x-forwarded-host"), equalFold(name, "x-forwarded-proto"),
			equalFold(name, "pragma"):
			return r, false
		}
	}
}

// targetByte: the characters of a plain origin-form target (RFC 3986
// unreserved, sub-delims, ':', '@', '/', '?'); no '%': a target with
// escapes goes through net/url.
func targetByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/?", c) >= 0
}

// hostByte: the characters of a plain host[:port] (a name or an IPv4
// address; IPv6 literals go through net/http).
func hostByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return c == '-' || c == '.' || c == ':' || c == '_'
}
