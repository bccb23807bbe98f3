// The Go SDK against a live tree ($TENKI_MOUNT; tests/e2e/sdk-go.bats starts a
// private tenkid for it).  The seed's "demo" session serves the tests in
// order; TestZLifecycle closes it last.  Run: go test -v
package tenkisandbox_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	tenkisandbox "tenkisandbox"
)

var (
	mount   string
	client  *tenkisandbox.Client
	session *tenkisandbox.Session
)

// `npm test` for the streaming test: the image has no npm, so a stand-in
// goes on the guest's PATH.  It prints its first line, then waits for
// /home/tenki/.npm-go before printing the last and exiting: a first line
// read while it waits came live.
const npm = "#!/bin/sh\necho \"> test: first line\"\n" +
	"while [ ! -e /home/tenki/.npm-go ]; do sleep 0.1; done\necho \"> test: last line\"\n"
const makefile = "test:\n\t@echo make-test-ran\n"

func TestMain(m *testing.M) {
	mount = os.Getenv("TENKI_MOUNT")
	if mount == "" {
		mount = "/tenki"
	}
	if _, err := os.Stat(filepath.Join(mount, "version")); err != nil {
		fmt.Println("no tenki tree at", mount, "(set TENKI_MOUNT): only the offline tests run")
		os.Exit(m.Run())
	}
	client = tenkisandbox.NewClient("")
	ctx := context.Background()
	// the seed's create example, as written
	var err error
	session, err = client.Create(
		ctx,
		tenkisandbox.WithName("demo"),
		tenkisandbox.WithCPUCores(4),
		tenkisandbox.WithMemoryMB(8192),
		tenkisandbox.WithAllowInbound(true),
		tenkisandbox.WithAllowOutbound(true),
		tenkisandbox.WithEnvs(map[string]string{"APP_ENV": "dev"}),
		tenkisandbox.WithMetadata(map[string]string{"owner": "alice"}),
	)
	if err != nil {
		fmt.Println("create:", err)
		os.Exit(1)
	}
	code := m.Run()
	session.Delete(ctx)
	os.Exit(code)
}

// need skips a test that needs the live tree when there is none.
func need(t *testing.T) {
	if session == nil {
		t.Skip("no tenki tree at " + mount + " (set TENKI_MOUNT)")
	}
}

func TestCreateExample(t *testing.T) {
	need(t)
	ctx := context.Background()
	st, err := session.State(ctx)
	if err != nil || (st != "CREATING" && st != "READY") {
		t.Fatalf("state right after Create: %q %v", st, err)
	}
	// the seed's lifecycle line
	err = session.WaitReady(ctx, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	i := session.Info
	if i.State != "READY" && i.State != "RUNNING" {
		t.Fatalf("state %s", i.State)
	}
	if i.CPUCores != 4 || i.MemoryMB != 8192 || !i.AllowInbound || !i.AllowOutbound {
		t.Fatalf("info %+v", i)
	}
	if i.Env["APP_ENV"] != "dev" || i.Metadata["owner"] != "alice" {
		t.Fatalf("env %v metadata %v", i.Env, i.Metadata)
	}
	r, err := session.Shell(ctx, "echo $APP_ENV")
	if err != nil || r.StdoutString() != "dev\n" {
		t.Fatalf("%v %+v", err, r)
	}
}

func TestListGet(t *testing.T) {
	need(t)
	ctx := context.Background()
	sessions, err := client.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range sessions {
		found = found || s.Name == "demo"
	}
	if !found {
		t.Fatal("demo not listed")
	}
	sessionID := session.ID
	got, err := client.Get(ctx, sessionID)
	if err != nil || got.Name != "demo" {
		t.Fatalf("get by id: %v %v", got, err)
	}
	_, err = client.Get(ctx, "no-such-session")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("get missing: %v", err)
	}
}

func TestExecExample(t *testing.T) {
	need(t)
	ctx := context.Background()
	if err := session.WriteFile(ctx, "/home/tenki/Makefile", []byte(makefile)); err != nil {
		t.Fatal(err)
	}
	// the seed's example, as written (t.Fatal for log.Fatal)
	result, err := session.Exec(
		ctx,
		"bash",
		tenkisandbox.WithArgs("-lc", "echo $APP_ENV && make test"),
		tenkisandbox.WithEnv("APP_ENV", "ci"),
		tenkisandbox.WithTimeout(2*time.Minute),
	)
	if err != nil {
		t.Fatal(err)
	}
	if !result.Status.IsSuccess() {
		t.Fatalf("failed: exit=%d stderr=%s", result.ExitCode, result.StderrString())
	}
	if result.StdoutString() != "ci\nmake-test-ran\n" || result.ExitCode != 0 || result.Err() != nil {
		t.Fatalf("%q %d", result.StdoutString(), result.ExitCode)
	}
	if result.Status.IsFailed() || result.Status.IsTimedOut() || result.Duration <= 0 {
		t.Fatalf("%+v", result)
	}
}

func TestExecTimeout(t *testing.T) {
	need(t)
	t0 := time.Now()
	r, err := session.Exec(context.Background(), "sleep", tenkisandbox.WithArgs("60"),
		tenkisandbox.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(t0) > 30*time.Second {
		t.Fatal("the timeout did not end it")
	}
	if !r.Status.IsTimedOut() || r.Status.IsSuccess() || !r.Status.IsFailed() || r.ExitCode != 124 {
		t.Fatalf("%+v", r)
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("Err: %v", err)
	}
}

func TestExecContextEndKillsJob(t *testing.T) {
	need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	t0 := time.Now()
	_, err := session.Exec(ctx, "sleep", tenkisandbox.WithArgs("60"))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 20*time.Second {
		t.Fatalf("%v after %v", err, time.Since(t0))
	}
}

func TestFailedCommandErrHasStderr(t *testing.T) {
	need(t)
	r, err := session.Exec(context.Background(), "sh",
		tenkisandbox.WithArgs("-c", "echo 'it broke: disk on fire' >&2; exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	var ce *tenkisandbox.CommandError
	e := r.Err()
	if !errors.As(e, &ce) || !strings.Contains(e.Error(), "it broke: disk on fire") || r.ExitCode != 3 {
		t.Fatalf("%v %+v", e, r)
	}
}

func TestExecOptions(t *testing.T) {
	need(t)
	ctx := context.Background()
	r, err := session.Exec(ctx, "sh", tenkisandbox.WithArgs("-c", `echo "$A|$B|$(pwd)"`),
		tenkisandbox.WithEnvs(map[string]string{"A": "1", "B": "two words"}), tenkisandbox.WithCwd("/tmp"))
	if err != nil || r.StdoutString() != "1|two words|/tmp\n" {
		t.Fatalf("%v %q", err, r.StdoutString())
	}
	r, err = session.Exec(ctx, "wc", tenkisandbox.WithArgs("-c"), tenkisandbox.WithStdin(make([]byte, 1000)))
	if err != nil || strings.TrimSpace(r.StdoutString()) != "1000" {
		t.Fatalf("%v %q", err, r.StdoutString())
	}
	r, err = session.Shell(ctx, "echo o; echo e >&2; exit 5")
	if err != nil || r.StdoutString() != "o\n" || r.StderrString() != "e\n" || r.ExitCode != 5 {
		t.Fatalf("%v %+v", err, r)
	}
}

func TestStartStreamsLive(t *testing.T) {
	need(t)
	ctx := context.Background()
	if err := session.WriteFile(ctx, "npm", []byte(npm)); err != nil {
		t.Fatal(err)
	}
	if r, err := session.Exec(ctx, "install", tenkisandbox.WithArgs("-m", "0755", "/home/tenki/npm", "/usr/local/bin/npm")); err != nil || r.Err() != nil {
		t.Fatal(err, r.Err())
	}
	session.RemoveFile(ctx, ".npm-go")
	p, err := session.Start(ctx, "npm", tenkisandbox.WithArgs("test"))
	if err != nil {
		t.Fatal(err)
	}
	p.CloseStdin()
	buf := make([]byte, 4096)
	n, err := p.Stdout.Read(buf)
	status, _ := os.ReadFile(filepath.Join(mount, "sessions/demo/exec", p.JobID, "status"))
	if err != nil || !strings.Contains(string(buf[:n]), "first line") || strings.Contains(string(buf[:n]), "last line") {
		t.Fatalf("first read %q %v", buf[:n], err)
	}
	if strings.TrimSpace(string(status)) != "running" {
		t.Fatalf("the first line came once the job was %q", status)
	}
	if err := session.WriteFile(ctx, ".npm-go", nil); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(p.Stdout)
	if string(rest) != "> test: last line\n" {
		t.Fatalf("rest %q", rest)
	}
	r, err := p.Wait(ctx)
	if err != nil || r.Err() != nil {
		t.Fatal(err, r.Err())
	}
}

func TestFileExample(t *testing.T) {
	need(t)
	ctx := context.Background()
	// the seed's example, as written
	err := session.WriteFile(ctx, "/home/tenki/hello.txt", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := session.ReadFile(ctx, "/home/tenki/hello.txt")
	if err != nil || string(data) != "hello" {
		t.Fatalf("%q %v", data, err)
	}
	r, _ := session.Exec(ctx, "cat", tenkisandbox.WithArgs("hello.txt"))
	if r.StdoutString() != "hello" {
		t.Fatalf("guest sees %q", r.StdoutString())
	}
	ents, err := session.ListFiles(ctx, "/home/tenki")
	found := false
	for _, e := range ents {
		found = found || (e.Name == "hello.txt" && e.Size == 5 && e.Path == "/home/tenki/hello.txt")
	}
	if err != nil || !found {
		t.Fatalf("%v %+v", err, ents)
	}
}

func TestBinaryRoundTrip(t *testing.T) {
	need(t)
	ctx := context.Background()
	blob := make([]byte, 3*1024*1024+7)
	rand.Read(blob)
	for i := 0; i < 256; i++ {
		blob[i] = byte(i)
	}
	if err := session.WriteFile(ctx, "sub/rand.bin", blob); err != nil {
		t.Fatal(err)
	}
	back, err := session.ReadFile(ctx, "/home/tenki/sub/rand.bin")
	if err != nil || !bytes.Equal(back, blob) {
		t.Fatalf("round trip differs (%v)", err)
	}
	sum := sha256.Sum256(blob)
	r, _ := session.Exec(ctx, "sha256sum", tenkisandbox.WithArgs("sub/rand.bin"))
	if !strings.HasPrefix(r.StdoutString(), hex.EncodeToString(sum[:])) {
		t.Fatalf("guest sum %q", r.StdoutString())
	}
}

func TestPathsOutsideHome(t *testing.T) {
	need(t)
	ctx := context.Background()
	for _, p := range []string{"/tmp/x", "/etc/passwd", "/home/tenki/../etc/passwd", "../x"} {
		if _, err := session.ReadFile(ctx, p); !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("read %s: %v", p, err)
		}
		if err := session.WriteFile(ctx, p, []byte("x")); !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("write %s: %v", p, err)
		}
	}
	if _, err := session.ReadFile(ctx, "missing.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
}

func TestErrorsCarryReason(t *testing.T) {
	need(t)
	ctx := context.Background()
	_, err := client.Create(ctx, tenkisandbox.WithName("demo"))
	var te *tenkisandbox.Error
	if !errors.As(err, &te) || te.Errno != syscall.EEXIST || !strings.Contains(te.Reason, "exists") {
		t.Fatalf("%v", err)
	}
	_, err = client.Create(ctx, tenkisandbox.WithName("bad"), tenkisandbox.WithCPUCores(99))
	if !errors.As(err, &te) || te.Errno != syscall.EINVAL || te.Reason == "" {
		t.Fatalf("%v", err)
	}
	if _, err := os.Stat(filepath.Join(mount, "sessions/bad")); err == nil {
		t.Fatal("a refused create left sessions/bad")
	}
}

func TestPortExample(t *testing.T) {
	need(t)
	ctx := context.Background()
	if _, err := os.Stat(filepath.Join(mount, "sessions/demo/ports")); err != nil {
		t.Skip("this tree has no sessions/<name>/ports/ (ports not merged yet)")
	}
	session.WriteFile(ctx, "www/index.html", []byte("hello from the guest\n"))
	srv, err := session.Start(ctx, "python3", tenkisandbox.WithArgs("-m", "http.server", "3000"),
		tenkisandbox.WithCwd("/home/tenki/www"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill("")
	// the seed's example, as written
	port, err := session.ExposePort(ctx, 3000)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := session.ListExposedPorts(ctx)
	if err != nil || len(ports) != 1 || ports[0].Port != 3000 || !strings.HasPrefix(port.URL, "http") || port.ExpiresAt != nil {
		t.Fatalf("%v %+v %+v", err, ports, port)
	}
	// the port's own listener and the shared preview listener
	if !strings.Contains(port.PreviewURL, "3000-demo.localhost") {
		t.Fatalf("preview %q", port.PreviewURL)
	}
	for _, url := range []string{port.URL, port.PreviewURL} {
		var body []byte
		for i := 0; i < 30; i++ {
			resp, err := httpGet(url)
			if err == nil && resp.StatusCode != 200 {
				resp.Body.Close()
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			if err == nil {
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				break
			}
			time.Sleep(time.Second)
		}
		if string(body) != "hello from the guest\n" {
			t.Fatalf("%s: body %q", url, body)
		}
	}
	err = session.UnexposePort(ctx, 3000)
	if err != nil {
		t.Fatal(err)
	}
	ports, _ = session.ListExposedPorts(ctx)
	if len(ports) != 0 {
		t.Fatalf("%+v", ports)
	}
	p, err := session.ExposePort(ctx, 8080, tenkisandbox.WithTTL(time.Hour))
	if err != nil || p.ExpiresAt == nil {
		t.Fatalf("%v %+v", err, p)
	}
	session.UnexposePort(ctx, 8080)
	if _, err := session.ExposePort(ctx, 0); !errors.Is(err, syscall.EINVAL) {
		t.Fatal(err)
	}
}

// httpGet fetches a URL like curl does: names under .localhost are this host.
func httpGet(url string) (*http.Response, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if host == "localhost" || strings.HasSuffix(host, ".localhost") {
			host = "127.0.0.1"
		}
		return (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, net.JoinHostPort(host, port))
	}}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return c.Get(url)
}

func keypair(t *testing.T) string {
	d := t.TempDir()
	if err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sdk-test", "-f", filepath.Join(d, "k")).Run(); err != nil {
		t.Skip("ssh-keygen:", err)
	}
	b, _ := os.ReadFile(filepath.Join(d, "k.pub"))
	return strings.TrimSpace(string(b))
}

func TestUpdateSSHKeys(t *testing.T) {
	need(t)
	ctx := context.Background()
	k := keypair(t)
	// the seed's line, with a real key
	err := session.UpdateSSHAuthorizedKeys(ctx, []string{k})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(mount, "sessions/demo/ssh/authorized_keys"))
	if string(b) != k+"\n" {
		t.Fatalf("%q", b)
	}
	if err := session.UpdateSSHAuthorizedKeys(ctx, []string{"ssh-ed25519 AAAA..."}); !errors.Is(err, syscall.EINVAL) {
		t.Fatal(err)
	}
}

// rmdirBusy waits out EBUSY: a volume is detached as its session goes.
func rmdirBusy(t *testing.T, p string) {
	for i := 0; ; i++ {
		err := os.Remove(p)
		if err == nil || !errors.Is(err, syscall.EBUSY) || i >= 60 {
			if err != nil {
				t.Errorf("rmdir %s: %v", p, err)
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestVolumesInCreate(t *testing.T) {
	need(t)
	ctx := context.Background()
	if _, err := os.Stat(filepath.Join(mount, "volumes")); err != nil {
		t.Skip("this tree has no volumes/ (volumes not merged yet)")
	}
	if err := os.WriteFile(filepath.Join(mount, "volumes/new"), []byte("name=govol size=64M"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer rmdirBusy(t, filepath.Join(mount, "volumes/govol"))
	v, err := client.CreateAndWait(ctx, 3*time.Minute, tenkisandbox.WithName("govol-user"),
		tenkisandbox.WithVolume("govol", "/data"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Delete(ctx)
	if len(v.Info.Volumes) != 1 || v.Info.Volumes[0].MountPath != "/data" || v.Info.Volumes[0].ReadOnly {
		t.Fatalf("%+v", v.Info.Volumes)
	}
	if r, err := v.Shell(ctx, "echo kept > /data/f && sync && cat /data/f"); err != nil || r.StdoutString() != "kept\n" {
		t.Fatalf("%v %+v", err, r)
	}
}

func TestSnapshotInCreate(t *testing.T) {
	need(t)
	ctx := context.Background()
	if _, err := os.Stat(filepath.Join(mount, "snapshots")); err != nil {
		t.Skip("this tree has no snapshots/ (snapshots not merged yet)")
	}
	if err := session.WriteFile(ctx, "snap-marker", []byte("before snapshot\n")); err != nil {
		t.Fatal(err)
	}
	if err := session.Snapshot(ctx, "go-snap", 0); err != nil {
		t.Fatal(err)
	}
	defer rmdirBusy(t, filepath.Join(mount, "snapshots/go-snap"))
	state := ""
	for i := 0; i < 300; i++ {
		b, _ := os.ReadFile(filepath.Join(mount, "snapshots/go-snap/state"))
		if state = strings.TrimSpace(string(b)); state != "CREATING" {
			break
		}
		time.Sleep(time.Second)
	}
	if state != "READY" {
		t.Fatalf("snapshot state %s", state)
	}
	r, err := client.CreateAndWait(ctx, 3*time.Minute, tenkisandbox.WithName("go-restored"),
		tenkisandbox.WithSnapshot("go-snap"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Delete(ctx)
	b, err := r.ReadFile(ctx, "snap-marker")
	if err != nil || string(b) != "before snapshot\n" || r.Info.Snapshot == nil || *r.Info.Snapshot != "go-snap" {
		t.Fatalf("%q %v %v", b, err, r.Info.Snapshot)
	}
}

func TestCreateAndWaitWithKeys(t *testing.T) {
	need(t)
	ctx := context.Background()
	k := keypair(t)
	// the seed's CreateAndWait line, plus SSH keys and a deadline
	session, err := client.CreateAndWait(ctx, 3*time.Minute, tenkisandbox.WithName("demo2"),
		tenkisandbox.WithSSHKeys([]string{k}), tenkisandbox.WithMaxDuration(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer session.Delete(ctx)
	if session.Info.State != "READY" && session.Info.State != "RUNNING" {
		t.Fatalf("state %s", session.Info.State)
	}
	b, _ := os.ReadFile(filepath.Join(mount, "sessions/demo2/ssh/authorized_keys"))
	if string(b) != k+"\n" {
		t.Fatalf("keys %q", b)
	}
	exp0 := *session.Info.ExpiresAt
	err = session.Extend(ctx, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	err = session.Refresh(ctx)
	if d := session.Info.ExpiresAt.Sub(exp0); err != nil || d < 30*time.Minute-5*time.Second || d > 30*time.Minute+5*time.Second {
		t.Fatalf("extend moved the deadline by %v (%v)", d, err)
	}
	err = session.CloseIfOpen(ctx)
	if st, _ := session.State(ctx); err != nil || st != "TERMINATED" {
		t.Fatalf("%v %s", err, st)
	}
	if err := session.CloseIfOpen(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestZLifecycle(t *testing.T) {
	need(t)
	ctx := context.Background()
	// the seed's lifecycle lines, as written
	err := session.WaitReady(ctx, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	err = session.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = session.Extend(ctx, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := session.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := session.State(ctx); st != "PAUSED" {
		t.Fatalf("after Pause: %s", st)
	}
	if err := session.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	err = session.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = session.CloseIfOpen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := session.State(ctx); st != "TERMINATED" {
		t.Fatalf("after Close: %s", st)
	}
	session.Refresh(ctx)
	if session.Info.ExpiresAt != nil { // no deadline: extend keeps none
		t.Fatalf("expires_at %v", session.Info.ExpiresAt)
	}
}
