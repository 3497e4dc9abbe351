package main

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/apps/echo/echoserver"
	"github.com/weftmesh/weft/test/apps/internal/testlog"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, o options)
		wantErr bool
	}{
		{
			name: "defaults",
			check: func(t *testing.T, o options) {
				if o.server.Name != "echo" || o.server.Version != "v1" || o.port != 8080 || o.grpcPort != 0 || o.tcpPort != 0 || o.server.FailPattern != nil {
					t.Errorf("%+v", o)
				}
			},
		},
		{
			name: "environment",
			env: map[string]string{
				"NAME": "books", "VERSION": "v2", "POD_NAME": "books-v2-0", "POD_NAMESPACE": "default", "POD_IP": "10.1.2.3",
				"PORT": "9080", "GRPC_PORT": "9090", "TCP_PORT": "9000", "FAIL_PATTERN": "503,503,200",
				"CALL": "http://ratings:9080/,http://reviews:9080/chain", "LOG_LEVEL": "debug",
			},
			check: func(t *testing.T, o options) {
				s := o.server
				if s.Name != "books" || s.Version != "v2" || s.PodName != "books-v2-0" || s.PodNamespace != "default" || s.PodIP != "10.1.2.3" {
					t.Errorf("identity %+v", s)
				}
				if o.port != 9080 || o.grpcPort != 9090 || o.tcpPort != 9000 {
					t.Errorf("ports %d %d %d", o.port, o.grpcPort, o.tcpPort)
				}
				if !slices.Equal(s.FailPattern, []int{503, 503, 200}) || len(s.Calls) != 2 || o.logLevel.String() != "DEBUG" {
					t.Errorf("pattern %v calls %v level %v", s.FailPattern, s.Calls, o.logLevel)
				}
			},
		},
		{
			name: "flags win over environment",
			args: []string{"-name", "ratings", "-fail-every", "3", "-call", "http://a", "-call", "http://b"},
			env:  map[string]string{"NAME": "books", "CALL": "http://c"},
			check: func(t *testing.T, o options) {
				if o.server.Name != "ratings" || !slices.Equal(o.server.FailPattern, []int{200, 200, 503}) || !slices.Equal(o.server.Calls, []string{"http://a", "http://b"}) {
					t.Errorf("%+v", o.server)
				}
			},
		},
		{name: "both fail options", args: []string{"-fail-every", "2"}, env: map[string]string{"FAIL_PATTERN": "503"}, wantErr: true},
		{name: "bad pattern", args: []string{"-fail-pattern", "oops"}, wantErr: true},
		{name: "bad env", env: map[string]string{"PORT": "http"}, wantErr: true},
		{name: "stray argument", args: []string{"extra"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.args, env(tt.env), t.Output())
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, o)
			}
		})
	}
}

func TestRunLifecycle(t *testing.T) {
	o, err := parseOptions([]string{"-listen-host", "127.0.0.1", "-port", "0", "-name", "gw", "-shutdown-timeout", "2s"}, env(nil), t.Output())
	if err != nil {
		t.Fatal(err)
	}
	var logs testlog.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, &logs) }()
	addr := logs.WaitAttr(t, "serving http", "addr")

	client := &http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/healthz", "/readyz", "/hello"} {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		var r echoserver.Response
		if path == "/hello" {
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Name != "gw" {
				t.Errorf("decode: %v, name %q", err, r.Name)
			}
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", path, resp.StatusCode)
		}
	}
	cancel() // as SIGTERM would
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not stop")
	}
	if _, err := client.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("server still answering after shutdown")
	}
}
