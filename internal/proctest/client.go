package proctest

import (
	"context"
	"net"
	"net/http"
	"time"
)

// UnixClient is an HTTP client whose every connection goes to the Unix socket at socket (the daemon's api.sock or
// control.sock), each request bounded by timeout (0: none). With keepAlive one connection is kept between
// requests; without, every request dials a new one. Requests name any host ("http://announcementd/v1/..."): the
// socket is what is dialled.
func UnixClient(socket string, timeout time.Duration, keepAlive bool) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableKeepAlives: !keepAlive,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}}}
}
