// Package systemd_test runs the built daemon as a systemd service under the machine's real systemd (252 on Debian
// 12), booted as PID 1 in namespaces by internal/sdsandbox: the units of systemd/units, the fd store, the watchdog,
// socket activation, reloads and self-upgrades through systemctl, and the .deb's life. It needs root (CI runs as
// root) and skips without it.
package systemd_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/internal/sdsandbox"
)

func TestMain(m *testing.M) { proctest.Main(m, nil) }

const (
	unit    = "announcementd.service"
	runtime = "/run/announcementd"
	shm     = "/dev/shm/notice_v1"
	bindir  = "/usr/local/bin"
)

// root is the module's root (this file is in e2e/systemd).
var root = func() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}()

// unitFile is a unit of systemd/units with its binaries under bindir.
func unitFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "systemd", "units", name))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.ReplaceAll(string(b), "@BINDIR@", bindir))
}

// service is a sandbox with announcementd installed as make install would: binaries, the sysusers.d user, units.
type service struct {
	t *testing.T
	*sdsandbox.Sandbox
	api, control *http.Client
}

// binaries are the built daemon and CLI (make build runs before the tests).
func binaries(t *testing.T) (daemon, ctl string) {
	daemon, ctl = filepath.Join(root, "bin", "announcementd"), filepath.Join(root, "bin", "announcementctl")
	for _, b := range []string{daemon, ctl} {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("%v: run make build first", err)
		}
	}
	return daemon, ctl
}

// newService boots a sandbox and installs the service into it, with dropIns ("name.conf" → content) for the
// service; it does not start it.
func newService(t *testing.T, dropIns map[string]string) *service {
	t.Helper()
	proctest.Slow(t, "boots systemd as PID 1 and runs the built daemon under it")
	sb := sdsandbox.New(t)
	daemon, ctl := binaries(t)
	sb.Push(daemon, bindir+"/announcementd", 0o755)
	sb.Push(ctl, bindir+"/announcementctl", 0o755)
	sb.Push(filepath.Join(root, "systemd", "units", "announcementd.sysusers"), "/etc/sysusers.d/announcementd.conf", 0o644)
	sb.MustSh("systemd-sysusers")
	sb.InstallUnit(unit, unitFile(t, unit))
	sb.InstallUnit("announcementd.socket", unitFile(t, "announcementd.socket"))
	// Restarted many times by the tests: no start limit.
	drops := map[string]string{"00-test.conf": "[Unit]\nStartLimitIntervalSec=0\n"}
	for k, v := range dropIns {
		drops[k] = v
	}
	for name, content := range drops {
		sb.InstallUnit(unit+".d/"+name, []byte(content))
	}
	s := &service{t: t, Sandbox: sb}
	s.api = unixClient(sb.Path(runtime+"/api.sock"), 20*time.Second)
	s.control = unixClient(sb.Path(runtime+"/control.sock"), 20*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := sb.Sh("journalctl", "-u", unit, "--no-pager", "-n", "200")
			t.Logf("journal of %s:\n%s", unit, out)
		}
	})
	return s
}

func unixClient(path string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
		MaxIdleConnsPerHost: 64,
	}}
}

// systemctl runs systemctl inside and returns its exit code and output.
func (s *service) systemctl(args ...string) (int, string) {
	out, err := s.Sh(append([]string{"systemctl"}, args...)...)
	return proctest.ExitCode(err), out
}

func (s *service) mustSystemctl(args ...string) string {
	s.t.Helper()
	code, out := s.systemctl(args...)
	if code != 0 {
		s.t.Fatalf("systemctl %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// show returns the service's properties.
func (s *service) show(props ...string) map[string]string { return s.Show(unit, props...) }

// mainPID is the service's MainPID (inside the sandbox).
func (s *service) mainPID() int {
	n, _ := strconv.Atoi(s.show("MainPID")["MainPID"])
	return n
}

// ctl runs announcementctl inside, as root.
func (s *service) ctl(args ...string) (int, string) {
	out, err := s.Sh(append([]string{bindir + "/announcementctl", "--runtime-dir", runtime}, args...)...)
	return proctest.ExitCode(err), out
}

// publish puts announcement id through the API socket, from the test process.
func (s *service) publish(c *http.Client, id int, text string) error {
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://announcementd/v1/announcements/%d", id),
		strings.NewReader(fmt.Sprintf(`{"content":%q}`, text)))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %d: %s: %s", id, resp.Status, body)
	}
	return nil
}

// board reads the region the service writes, from the host.
func (s *service) board() (*reader.Board, error) { return reader.Open(s.Path(shm)) }

// version is the board's version (0 when it cannot be read).
func (s *service) version() uint64 {
	b, err := s.board()
	if err != nil {
		return 0
	}
	defer b.Close()
	return b.Version()
}

// load publishes from a few clients (keep-alive connections) until stop, counting what failed.
type load struct {
	acked, failed atomic.Int64
	// failed, by kind: refused (connect: ECONNREFUSED or ENOENT), reset before any answer, and every other
	// failure (an EOF mid-answer, a 5xx, a timeout).
	refused, reset, other atomic.Int64
	mu                    sync.Mutex
	errs                  []string
	stop                  chan struct{}
	wg                    sync.WaitGroup
}

func (s *service) startLoad(clients int) *load {
	l := &load{stop: make(chan struct{})}
	for c := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			client := unixClient(s.Path(runtime+"/api.sock"), 60*time.Second)
			defer client.CloseIdleConnections()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if err := s.publish(client, 1000+c, fmt.Sprintf("client %d, write %d", c, i)); err != nil {
					l.failed.Add(1)
					switch {
					case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT):
						l.refused.Add(1)
					case errors.Is(err, syscall.ECONNRESET):
						l.reset.Add(1)
					default:
						l.other.Add(1)
					}
					l.mu.Lock()
					if len(l.errs) < 10 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
				} else {
					l.acked.Add(1)
				}
			}
		}()
	}
	return l
}

func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d acknowledged, %d failed (%d refused, %d reset before an answer, %d other; first: %q)",
		l.acked.Load(), l.failed.Load(), l.refused.Load(), l.reset.Load(), l.other.Load(), l.errs)
}

// waitAcked waits until the load has n more acknowledged writes than now: the service serves it.
func (l *load) waitAcked(t *testing.T, n int64) {
	t.Helper()
	want := l.acked.Load() + n
	proctest.WaitUntil(t, 30*time.Second, func() bool { return l.acked.Load() >= want }, fmt.Sprintf("%d acknowledged writes", n))
}

// connectLoop connects to the API socket in a loop and asks for /healthz on each connection until stop, counting
// refused connections and a missing socket (what a restart of the main process must never show).
type connectLoop struct {
	ok, refused, missing, other atomic.Int64
	stop                        chan struct{}
	done                        chan struct{}
	mu                          sync.Mutex
	errs                        []string // the first other failures
}

func (c *connectLoop) fail(what string, err error) {
	c.other.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.errs) < 5 {
		c.errs = append(c.errs, fmt.Sprintf("%s at %s: %v", what, time.Now().Format("15:04:05.000"), err))
	}
}

func (s *service) startConnectLoop() *connectLoop {
	c := &connectLoop{stop: make(chan struct{}), done: make(chan struct{})}
	path := s.Path(runtime + "/api.sock")
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			conn, err := net.DialTimeout("unix", path, 30*time.Second)
			switch {
			case errors.Is(err, syscall.ECONNREFUSED):
				c.refused.Add(1)
				continue
			case errors.Is(err, syscall.ENOENT):
				c.missing.Add(1)
				continue
			case err != nil:
				c.fail("connect", err)
				continue
			}
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			switch {
			case err != nil:
				c.fail("GET /healthz", err)
			case resp.StatusCode >= 500:
				c.fail("GET /healthz", errors.New(resp.Status))
			default:
				c.ok.Add(1)
			}
			conn.Close()
		}
	}()
	return c
}

func (c *connectLoop) end() {
	close(c.stop)
	<-c.done
}

func (c *connectLoop) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%d answered, %d refused, %d socket missing, %d other failures %q", c.ok.Load(), c.refused.Load(),
		c.missing.Load(), c.other.Load(), c.errs)
}

// hostPIDs are the host pids of the processes in the service's cgroup.
func (s *service) processes() []string {
	out, _ := s.Sh("systemctl", "show", "-p", "ControlGroup", "--value", unit)
	cg := strings.TrimSpace(out)
	if cg == "" {
		return nil
	}
	procs, _ := s.Sh("cat", "/sys/fs/cgroup"+cg+"/cgroup.procs")
	return strings.Fields(procs)
}

// pushNewBuild installs a daemon binary of other contents (the linker stamps its flags into the build ID, even for
// a -X of no variable), so that a reload is a self-upgrade.
func (s *service) pushNewBuild(tag string) {
	s.t.Helper()
	out := filepath.Join(s.t.TempDir(), "announcementd")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.buildTag="+tag, "-o", out, "./cmd/announcementd")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("build: %v\n%s", err, b)
	}
	s.Push(out, bindir+"/announcementd", 0o755)
}
