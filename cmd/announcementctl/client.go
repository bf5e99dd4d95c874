package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/announcementd/announcementd/wire"
)

// client talks to the daemon's API (docs/API.md) over its Unix socket, or over TCP with a bearer token.
type client struct {
	http  *http.Client
	base  string
	token string
	where endpoint // for messages: who and where
}

func newClient(g globals) (*client, error) {
	c := &client{http: &http.Client{Timeout: 60 * time.Second}}
	if g.addr != "" {
		network, hostport, _ := strings.Cut(g.addr, ":")
		if network != "tcp" || hostport == "" {
			return nil, usageError{fmt.Sprintf("--addr %q: want tcp:HOST:PORT", g.addr)}
		}
		if g.tokenFile == "" {
			return nil, usageError{"--addr needs --token-file: the daemon requires a token on TCP"}
		}
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		c.token, c.base, c.where = strings.TrimSpace(string(b)), "http://"+hostport, endpoint{what: "announcementd", addr: g.addr}
		return c, nil
	}
	return unixClient(endpoint{what: "announcementd", addr: filepath.Join(g.runtimeDir, "api.sock")}), nil
}

// newControlClient talks to the supervisor's control socket, which is only ever local.
func newControlClient(g globals) *client {
	c := unixClient(endpoint{what: "announcementd's supervisor", addr: filepath.Join(g.runtimeDir, "control.sock")})
	c.http.Timeout = 0 // reload --wait takes as long as the reload; the caller's ctx bounds it
	return c
}

func unixClient(e endpoint) *client {
	c := &client{http: &http.Client{Timeout: 60 * time.Second}, base: "http://announcementd", where: e}
	c.http.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", e.addr)
	}}
	return c
}

// do sends a request with an optional JSON body and decodes a JSON answer into out.
func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	status, b, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		return answerError(method, path, status, b)
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = b
		return nil
	}
	return json.Unmarshal(b, out)
}

// answerError is the error of a non-2xx answer: the daemon's wire.Error, with its status; or, for a body that is
// not one, a wire.Error that says the status.
func answerError(method, path string, status int, body []byte) *wire.Error {
	e := &wire.Error{}
	if json.Unmarshal(body, e) != nil || e.Message == "" {
		e.Message = fmt.Sprintf("%s %s: %d %s", method, path, status, http.StatusText(status))
	}
	e.Status = status
	return e
}

// send sends a request with an optional JSON body and returns the answer's status and body, whatever the status.
func (c *client) send(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		return 0, nil, &unreachableError{c.where, err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, &unreachableError{c.where, err}
	}
	return resp.StatusCode, b, nil
}
