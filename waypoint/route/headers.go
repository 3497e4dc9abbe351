package route

import (
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"golang.org/x/net/http/httpguts"
)

// headerOp is one compiled HeaderValueOption.
type headerOp struct {
	name      string // canonical
	value     string
	action    corev3.HeaderValueOption_HeaderAppendAction
	keepEmpty bool
}

// Mutation is one level's header mutation (route configuration, virtual host, route or
// weighted cluster): headers removed first, then headers added, as Envoy's header parser
// evaluates them.
type Mutation struct {
	remove []string
	add    []headerOp
}

func (m *Mutation) empty() bool { return m == nil || len(m.remove) == 0 && len(m.add) == 0 }

// Apply mutates h.
func (m *Mutation) Apply(h http.Header) {
	if m == nil {
		return
	}
	for _, n := range m.remove {
		h.Del(n)
	}
	for _, op := range m.add {
		if op.value == "" && !op.keepEmpty {
			continue
		}
		_, exists := h[op.name]
		switch op.action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			h[op.name] = append(h[op.name], op.value)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !exists {
				h[op.name] = []string{op.value}
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h[op.name] = []string{op.value}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if exists {
				h[op.name] = []string{op.value}
			}
		}
	}
}

// compileMutation compiles the four header lists of one level; request selects which pair.
func compileMutation(path, addField, removeField string, add []*corev3.HeaderValueOption, remove []string) (*Mutation, error) {
	m := &Mutation{}
	for i, n := range remove {
		if !httpguts.ValidHeaderFieldName(n) || strings.EqualFold(n, "host") {
			return nil, fieldError(idx(path, removeField, i), "%q cannot be removed; name a regular header (not Host or a pseudo-header)", n)
		}
		m.remove = append(m.remove, http.CanonicalHeaderKey(n))
	}
	for i, o := range add {
		p := idx(path, addField, i)
		if err := onlyFields(p, o, "header", "append", "append_action", "keep_empty_value"); err != nil {
			return nil, err
		}
		h := o.GetHeader()
		if h == nil {
			return nil, fieldError(join(p, "header"), "required")
		}
		if err := onlyFields(join(p, "header"), h, "key", "value", "raw_value"); err != nil {
			return nil, err
		}
		if !httpguts.ValidHeaderFieldName(h.GetKey()) || strings.EqualFold(h.GetKey(), "host") {
			return nil, fieldError(join(p, "header.key"), "%q cannot be set; name a regular header (not Host or a pseudo-header; use host_rewrite_literal for the host)", h.GetKey())
		}
		v := h.GetValue()
		if len(h.GetRawValue()) > 0 {
			if v != "" {
				return nil, fieldError(join(p, "header"), "value and raw_value exclude each other; keep one")
			}
			v = string(h.GetRawValue())
		}
		// Envoy interprets %COMMAND% operators in values; only the escape %% is supported.
		if strings.Contains(strings.ReplaceAll(v, "%%", ""), "%") {
			return nil, fieldError(join(p, "header.value"), "%q uses a %%COMMAND%% substitution, which the waypoint does not support; use a literal value (write %% for a percent sign)", v)
		}
		v = strings.ReplaceAll(v, "%%", "%")
		if !httpguts.ValidHeaderFieldValue(v) {
			return nil, fieldError(join(p, "header.value"), "%q is not a valid header value", v)
		}
		action := o.GetAppendAction()
		//lint:ignore SA1019 the deprecated append is still honoured, as Envoy does
		if legacy := o.GetAppend(); legacy != nil {
			if action != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
				return nil, fieldError(join(p, "append"), "append and append_action exclude each other; keep append_action")
			}
			if !legacy.GetValue() {
				action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
			}
		}
		switch action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, corev3.HeaderValueOption_ADD_IF_ABSENT, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		default:
			return nil, fieldError(join(p, "append_action"), "unknown action %v", action)
		}
		m.add = append(m.add, headerOp{name: http.CanonicalHeaderKey(h.GetKey()), value: v, action: action, keepEmpty: o.GetKeepEmptyValue()})
	}
	if m.empty() {
		return nil, nil
	}
	return m, nil
}

// levelHeaders holds the request and response mutations of one level.
type levelHeaders struct {
	req, resp *Mutation
}

type headerSource interface {
	GetRequestHeadersToAdd() []*corev3.HeaderValueOption
	GetRequestHeadersToRemove() []string
	GetResponseHeadersToAdd() []*corev3.HeaderValueOption
	GetResponseHeadersToRemove() []string
}

func compileLevelHeaders(path string, s headerSource) (levelHeaders, error) {
	req, err := compileMutation(path, "request_headers_to_add", "request_headers_to_remove", s.GetRequestHeadersToAdd(), s.GetRequestHeadersToRemove())
	if err != nil {
		return levelHeaders{}, err
	}
	resp, err := compileMutation(path, "response_headers_to_add", "response_headers_to_remove", s.GetResponseHeadersToAdd(), s.GetResponseHeadersToRemove())
	if err != nil {
		return levelHeaders{}, err
	}
	return levelHeaders{req: req, resp: resp}, nil
}

// applyLevels applies the mutations from the most specific level to the least (Envoy's
// default, so that the least specific wins on overwrite), or the reverse when
// most_specific_header_mutations_wins is set.
func applyLevels(h http.Header, mostSpecificWins bool, resp bool, levels ...*levelHeaders) {
	n := len(levels)
	for i := range n {
		l := levels[i]
		if mostSpecificWins {
			l = levels[n-1-i]
		}
		if l == nil {
			continue
		}
		if resp {
			l.resp.Apply(h)
		} else {
			l.req.Apply(h)
		}
	}
}
