package hbone_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/internal/hbone"
)

// TestClientWire checks, frame by frame, what the pool sends: the TLS ClientHello (TLS 1.3
// only, ALPN h2, no SNI), the HTTP/2 settings and window sizes, and the CONNECT headers.
func TestClientWire(t *testing.T) {
	certs := newManager(t, "cluster.local")
	svid, err := certs.Get(t.Context(), serverID)
	if err != nil {
		t.Fatal(err)
	}
	hello := make(chan *tls.ClientHelloInfo, 1)
	cfg := tlsconfig.MTLSServerConfig(svid, certs.Bundle(), tlsconfig.AuthorizeID(clientID))
	cfg.NextProtos = []string{"h2"}
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		hello <- h
		return nil, nil
	}
	ln, addr := listen(t)
	defer ln.Close()

	type frames struct {
		settings map[http2.SettingID]uint32
		connWin  uint32
		headers  []hpack.HeaderField
		endStrm  bool
		err      error
	}
	result := make(chan frames, 1)
	go func() {
		var f frames
		defer func() { result <- f }()
		raw, err := ln.Accept()
		if err != nil {
			f.err = err
			return
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		c := tls.Server(raw, cfg)
		if f.err = c.Handshake(); f.err != nil {
			return
		}
		preface := make([]byte, len(http2.ClientPreface))
		if _, f.err = io.ReadFull(c, preface); f.err != nil {
			return
		}
		fr := http2.NewFramer(c, c)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		if f.err = fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 200}); f.err != nil {
			return
		}
		f.settings = map[http2.SettingID]uint32{}
		for {
			frame, err := fr.ReadFrame()
			if err != nil {
				f.err = err
				return
			}
			switch fm := frame.(type) {
			case *http2.SettingsFrame:
				if fm.IsAck() {
					continue
				}
				_ = fm.ForeachSetting(func(s http2.Setting) error { f.settings[s.ID] = s.Val; return nil })
				_ = fr.WriteSettingsAck()
			case *http2.WindowUpdateFrame:
				if fm.StreamID == 0 {
					f.connWin += fm.Increment
				}
			case *http2.MetaHeadersFrame:
				f.headers = fm.Fields
				f.endStrm = fm.StreamEnded()
				var hb bytes.Buffer
				enc := hpack.NewEncoder(&hb)
				_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
				f.err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: fm.StreamID, BlockFragment: hb.Bytes(), EndHeaders: true})
				return
			}
		}
	}()

	pool, err := hbone.NewPool(hbone.PoolConfig{Certs: certs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req := hbone.Request{
		Source:       clientID,
		Destination:  []spiffeid.ID{serverID},
		Addr:         addr,
		Authority:    mustAddrPort("10.0.0.2:8080"),
		ForwardedFor: mustAddrPort("10.0.0.1:34567"),
		Baggage:      hbone.Baggage{Namespace: "shop", WorkloadName: "productpage-v1", ServiceName: "productpage", ServiceVersion: "v1"},
	}
	c, err := pool.Dial(ctx, req)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	f := <-result
	if f.err != nil {
		t.Fatalf("fake server: %v", f.err)
	}

	h := <-hello
	if h.ServerName != "" {
		t.Errorf("SNI %q sent, want none", h.ServerName)
	}
	if !slices.Equal(h.SupportedVersions, []uint16{tls.VersionTLS13}) {
		t.Errorf("offered TLS versions %x, want TLS 1.3 only", h.SupportedVersions)
	}
	if !slices.Equal(h.SupportedProtos, []string{"h2"}) {
		t.Errorf("ALPN %q, want [h2]", h.SupportedProtos)
	}

	wantSettings := map[http2.SettingID]uint32{
		http2.SettingInitialWindowSize: hbone.StreamWindow,
		http2.SettingMaxFrameSize:      hbone.MaxFrameSize,
	}
	for id, want := range wantSettings {
		if got := f.settings[id]; got != want {
			t.Errorf("client setting %v = %d, want %d", id, got, want)
		}
	}
	if v, ok := f.settings[http2.SettingEnablePush]; ok && v != 0 {
		t.Errorf("client enables push")
	}
	// The connection window starts at 65535; the update brings it to ConnectionWindow.
	if f.connWin+65535 != hbone.ConnectionWindow {
		t.Errorf("client connection window %d, want %d", f.connWin+65535, hbone.ConnectionWindow)
	}
	wantHeaders := []hpack.HeaderField{
		{Name: ":authority", Value: "10.0.0.2:8080"},
		{Name: ":method", Value: "CONNECT"},
		{Name: "baggage", Value: "k8s.namespace.name=shop,k8s.deployment.name=productpage-v1,service.name=productpage,service.version=v1"},
		{Name: "forwarded", Value: `for="10.0.0.1:34567"`},
	}
	got := slices.Clone(f.headers)
	slices.SortFunc(got, func(a, b hpack.HeaderField) int { return cmpString(a.Name, b.Name) })
	if !slices.EqualFunc(got, wantHeaders, func(a, b hpack.HeaderField) bool { return a.Name == b.Name && a.Value == b.Value }) {
		t.Errorf("CONNECT headers\n got %v\nwant %v", got, wantHeaders)
	}
	if f.endStrm {
		t.Error("CONNECT HEADERS ended the stream")
	}
}

// TestServerWire checks the settings and window the server announces.
func TestServerWire(t *testing.T) {
	e := newEnv(t, nil)
	svid, err := e.certs.Get(t.Context(), clientID)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tlsconfig.MTLSClientConfig(svid, e.certs.Bundle(), tlsconfig.AuthorizeID(serverID))
	cfg.NextProtos = []string{"h2"}
	raw, err := net.Dial("tcp", e.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Client(raw, cfg)
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	cs := c.ConnectionState()
	if cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != "h2" || cs.DidResume {
		t.Errorf("TLS version %x, ALPN %q, resumed %v; want TLS 1.3, h2, no resumption", cs.Version, cs.NegotiatedProtocol, cs.DidResume)
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	settings := map[http2.SettingID]uint32{}
	var connWin uint32
	for connWin == 0 {
		frame, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch fm := frame.(type) {
		case *http2.SettingsFrame:
			if !fm.IsAck() {
				_ = fm.ForeachSetting(func(s http2.Setting) error { settings[s.ID] = s.Val; return nil })
			}
		case *http2.WindowUpdateFrame:
			if fm.StreamID == 0 {
				connWin = fm.Increment
			}
		}
	}
	want := map[http2.SettingID]uint32{
		http2.SettingMaxConcurrentStreams: hbone.DefaultServerMaxStreams,
		http2.SettingInitialWindowSize:    hbone.StreamWindow,
		http2.SettingMaxFrameSize:         hbone.MaxFrameSize,
	}
	for id, w := range want {
		if settings[id] != w {
			t.Errorf("server setting %v = %d, want %d", id, settings[id], w)
		}
	}
	if got := settings[http2.SettingMaxHeaderListSize]; got < 64<<10 {
		t.Errorf("server MAX_HEADER_LIST_SIZE = %d, want at least 64 KiB", got)
	}
	// The connection window starts at 65535; the update brings it to ConnectionWindow.
	if connWin+65535 != hbone.ConnectionWindow {
		t.Errorf("server connection window %d, want %d", connWin+65535, hbone.ConnectionWindow)
	}
}

func cmpString(a, b string) int { return strings.Compare(a, b) }
