package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestServesProbes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	for _, p := range []string{"/healthz", "/readyz", "/version"} {
		resp, err := http.Get("http://" + ln.Addr().String() + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Errorf("GET %s: %s %q", p, resp.Status, body)
		}
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /nothing: %s, want 404", resp.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop within 10s of cancel")
	}
}

func TestPortFrom(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cases := []struct {
		args    []string
		env     map[string]string
		want    int
		wantErr string
	}{
		{nil, nil, 8080, ""},
		{nil, map[string]string{"PLATFORM_CONTROLLER_PORT": "9000"}, 9000, ""},
		{[]string{"--port=9100"}, map[string]string{"PLATFORM_CONTROLLER_PORT": "9000"}, 9100, ""},
		{nil, map[string]string{"PLATFORM_CONTROLLER_PORT": "http"}, 0, "PLATFORM_CONTROLLER_PORT"},
		{[]string{"--port=70000"}, nil, 0, "--port=70000"},
	}
	for _, c := range cases {
		got, err := portFrom(c.args, env(c.env))
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("portFrom(%v, %v) error %v, want one naming %s", c.args, c.env, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("portFrom(%v, %v) = %d, %v; want %d", c.args, c.env, got, err, c.want)
		}
	}
}
