// Package web is the dashboard: a static page, its script and its styles,
// embedded in the binary and served by every agent next to the API. No
// CDN, no external font, no build step: the files in static/ are what the
// browser gets (gzipped when it takes gzip). The page signs in with an API
// token kept in the tab's sessionStorage and follows the cluster through
// the API's server-sent events; every button calls the API with that
// token, so the API's role checks are the only ones that count (the page
// disables what the token's role may not do, as a courtesy).
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed static
var static embed.FS

type asset struct {
	body, gz []byte
	ctype    string
	etag     string
}

// Assets lists the dashboard's files by URL path ("/" and
// "/assets/NAME"), with their sizes.
func Assets() map[string]int {
	out := map[string]int{}
	for p, a := range load() {
		out[p] = len(a.body)
	}
	return out
}

func load() map[string]*asset {
	out := map[string]*asset{}
	_ = fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		var gz bytes.Buffer
		w, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		w.Write(b)
		w.Close()
		sum := sha256.Sum256(b)
		a := &asset{body: b, gz: gz.Bytes(), ctype: mime.TypeByExtension(path.Ext(p)), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		name := strings.TrimPrefix(p, "static/")
		if name == "index.html" {
			out["/"] = a
		} else {
			out["/assets/"+name] = a
		}
		return nil
	})
	return out
}

// securityHeaders: the page runs only its own script and styles and talks
// only to its own origin.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the dashboard.
func Handler() http.Handler {
	assets := load()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("ETag", a.etag)
		h.Set("Vary", "Accept-Encoding")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", csp)
		h.Set("Referrer-Policy", "no-referrer")
		// Revalidated each time: an upgraded agent serves its own script.
		h.Set("Cache-Control", "no-cache")
		if r.Header.Get("If-None-Match") == a.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := a.body
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			h.Set("Content-Encoding", "gzip")
			body = a.gz
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
}
