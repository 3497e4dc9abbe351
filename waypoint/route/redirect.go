package route

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// Redirect is a compiled RedirectAction.
type Redirect struct {
	// Status is the response code (301 unless set).
	Status int

	scheme       string
	host         string
	port         string // ":8080" or empty
	pathRedirect string
	hasPrefix    bool
	prefix       string
	re           *regexp.Regexp
	reSub        string
	stripQuery   bool
	match        *routeMatch
}

func compileRedirect(path string, r *routev3.RedirectAction, m *routeMatch) (*Redirect, error) {
	if err := onlyFields(path, r, "https_redirect", "scheme_redirect", "host_redirect", "port_redirect", "path_redirect", "prefix_rewrite", "regex_rewrite", "response_code", "strip_query"); err != nil {
		return nil, err
	}
	out := &Redirect{host: r.GetHostRedirect(), stripQuery: r.GetStripQuery(), match: m}
	switch s := r.GetSchemeRewriteSpecifier().(type) {
	case *routev3.RedirectAction_HttpsRedirect:
		if s.HttpsRedirect {
			out.scheme = "https"
		}
	case *routev3.RedirectAction_SchemeRedirect:
		out.scheme = strings.ToLower(s.SchemeRedirect)
	}
	if p := r.GetPortRedirect(); p != 0 {
		if p > 65535 {
			return nil, fieldError(join(path, "port_redirect"), "%d is not a port", p)
		}
		out.port = ":" + strconv.FormatUint(uint64(p), 10)
	}
	switch p := r.GetPathRewriteSpecifier().(type) {
	case *routev3.RedirectAction_PathRedirect:
		out.pathRedirect = p.PathRedirect
	case *routev3.RedirectAction_PrefixRewrite:
		out.prefix, out.hasPrefix = p.PrefixRewrite, true
	case *routev3.RedirectAction_RegexRewrite:
		re, sub, err := compileRegexRewrite(join(path, "regex_rewrite"), p.RegexRewrite)
		if err != nil {
			return nil, err
		}
		out.re, out.reSub = re, sub
	}
	switch r.GetResponseCode() {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		out.Status = http.StatusMovedPermanently
	case routev3.RedirectAction_FOUND:
		out.Status = http.StatusFound
	case routev3.RedirectAction_SEE_OTHER:
		out.Status = http.StatusSeeOther
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		out.Status = http.StatusTemporaryRedirect
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		out.Status = http.StatusPermanentRedirect
	default:
		return nil, fieldError(join(path, "response_code"), "unknown code %v", r.GetResponseCode())
	}
	return out, nil
}

// Location returns the redirect's target for req, built as Envoy builds it: scheme (the
// redirect's, else x-forwarded-proto, else the request's), host (host_redirect, else the
// request's without its port when port_redirect is set or the scheme changes from the port's
// default), port_redirect, and the path (path_redirect, whose own query wins; else the
// request's path with prefix_rewrite or regex_rewrite applied), with the query kept unless
// strip_query.
func (rd *Redirect) Location(req *http.Request) string {
	reqScheme := req.Header.Get("X-Forwarded-Proto")
	if reqScheme == "" {
		reqScheme = scheme(req)
	}
	finalScheme := rd.scheme
	if finalScheme == "" {
		finalScheme = reqScheme
	}
	host := rd.host
	if host == "" {
		host = req.Host
		if i := portIndex(host); i >= 0 {
			port := host[i:]
			remove := rd.port != ""
			if finalScheme != reqScheme {
				remove = remove || reqScheme == "https" && port == ":443" || reqScheme == "http" && port == ":80"
			}
			if remove {
				host = host[:i]
			}
		}
	}
	p := requestPath(req)
	query := ""
	if req.URL.RawQuery != "" || req.URL.ForceQuery {
		query = "?" + req.URL.RawQuery
	}
	pathHasQuery := false
	switch {
	case rd.pathRedirect != "":
		p = rd.pathRedirect
		pathHasQuery = strings.Contains(p, "?")
		if pathHasQuery {
			query = ""
		}
	case rd.hasPrefix:
		n := rd.match.matchPath(p)
		if n < 0 {
			n = 0
		}
		p = rd.prefix + p[n:]
	case rd.re != nil:
		p = rd.re.ReplaceAllString(p, rd.reSub)
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if rd.stripQuery && !pathHasQuery {
		query = ""
	}
	return finalScheme + "://" + host + rd.port + p + query
}

// portIndex returns the index of the ":port" suffix of a host, -1 for none.
func portIndex(host string) int {
	if strings.HasPrefix(host, "[") {
		if i := strings.LastIndex(host, "]:"); i >= 0 {
			return i + 1
		}
		return -1
	}
	return strings.LastIndex(host, ":")
}
