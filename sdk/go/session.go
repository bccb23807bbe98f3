package tenkisandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Client is the tree at one mount point.
type Client struct {
	Mount string
}

// NewClient uses mount, else $TENKI_MOUNT, else /tenki.
func NewClient(mount string) *Client {
	if mount == "" {
		mount = os.Getenv("TENKI_MOUNT")
	}
	if mount == "" {
		mount = defaultMount
	}
	return &Client{Mount: mount}
}

func (c *Client) sessions() string { return filepath.Join(c.Mount, "sessions") }

func (c *Client) mark() *errMark {
	return mark(filepath.Join(c.sessions(), "err"), filepath.Join(c.Mount, "err"))
}

// SessionInfo is a session's info.json.
type SessionInfo struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	State         string            `json:"state"`
	CPUCores      int               `json:"cpu_cores"`
	MemoryMB      int               `json:"memory_mb"`
	AllowInbound  bool              `json:"allow_inbound"`
	AllowOutbound bool              `json:"allow_outbound"`
	CreatedAt     *time.Time        `json:"created_at"`
	ExpiresAt     *time.Time        `json:"expires_at"`
	Env           map[string]string `json:"env"`
	Metadata      map[string]string `json:"metadata"`
	Image         string            `json:"image"`
	Snapshot      *string           `json:"snapshot"`
	Template      *string           `json:"template"`
	Volumes       []struct {
		VolumeID  string `json:"volume_id"`
		Name      string `json:"name"`
		MountPath string `json:"mount_path"`
		ReadOnly  bool   `json:"read_only"`
	} `json:"volumes"`
	Ports []struct {
		Port      int        `json:"port"`
		URL       string     `json:"url"`
		ExpiresAt *time.Time `json:"expires_at"`
	} `json:"ports"`
	SSH struct {
		Target *string `json:"target"`
		Keys   int     `json:"keys"`
	} `json:"ssh"`
	Reason *string `json:"reason"`
}

// Session is one session directory, sessions/<name>.  Info is its record
// as of the last Refresh.
type Session struct {
	client *Client
	Name   string
	ID     string
	Info   SessionInfo
	path   string
}

func (c *Client) session(name string) *Session {
	return &Session{client: c, Name: name, path: filepath.Join(c.sessions(), name)}
}

func spec(o *options, wait bool, waitTimeout time.Duration) map[string]any {
	s := map[string]any{"wait": wait}
	set := func(k string, v any, ok bool) {
		if ok {
			s[k] = v
		}
	}
	set("name", o.name, o.name != "")
	set("cpu_cores", o.cpu, o.cpu != 0)
	set("memory_mb", o.mem, o.mem != 0)
	set("allow_inbound", o.inbound, o.inbound != nil)
	set("allow_outbound", o.outbound, o.outbound != nil)
	set("max_duration", durationText(o.maxDuration), o.maxDuration > 0)
	set("env", o.env, len(o.env) > 0)
	set("metadata", o.metadata, len(o.metadata) > 0)
	set("ssh_authorized_keys", o.sshKeys, len(o.sshKeys) > 0)
	set("volumes", o.volumes, len(o.volumes) > 0)
	set("snapshot", o.snapshot, o.snapshot != "")
	set("template", o.template, o.template != "")
	set("image", o.image, o.image != "")
	set("wait_timeout", durationText(waitTimeout), wait && waitTimeout > 0)
	return s
}

// Create starts a session and returns at once (its state is CREATING
// until it boots; see WaitReady).
func (c *Client) Create(ctx context.Context, opts ...Option) (*Session, error) {
	return c.create(ctx, spec(collect(opts), false, 0))
}

// CreateAndWait creates a session and returns once it is usable, or an
// error (ETIMEDOUT) after timeout; the session then stays, still booting.
func (c *Client) CreateAndWait(ctx context.Context, timeout time.Duration, opts ...Option) (*Session, error) {
	if dl, ok := ctx.Deadline(); ok && (timeout <= 0 || time.Until(dl) < timeout) {
		timeout = time.Until(dl)
	}
	return c.create(ctx, spec(collect(opts), true, timeout))
}

func (c *Client) create(ctx context.Context, s map[string]any) (*Session, error) {
	text, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	op := "create session"
	if n, ok := s["name"].(string); ok {
		op += " " + n
	}
	m := c.mark()
	f, err := openFile(filepath.Join(c.sessions(), "new"), os.O_RDWR, 0)
	if err != nil {
		return nil, m.wrap(op, err)
	}
	defer f.Close()
	if _, err = f.Write(text); err != nil {
		return nil, m.wrap(op, err)
	}
	buf := make([]byte, 256)
	n, err := f.ReadAt(buf, 0)
	name := strings.TrimSpace(string(buf[:n]))
	if name == "" {
		return nil, m.wrap(op, fmt.Errorf("sessions/new gave no name back (%v)", err))
	}
	sess := c.session(name)
	return sess, sess.Refresh(ctx)
}

// List returns every session (records from sessions/index.json).
func (c *Client) List(ctx context.Context) ([]*Session, error) {
	m := c.mark()
	b, err := readAll(filepath.Join(c.sessions(), "index.json"))
	if err != nil {
		return nil, m.wrap("list sessions", err)
	}
	var recs []SessionInfo
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	out := make([]*Session, 0, len(recs))
	for _, r := range recs {
		s := c.session(r.Name)
		s.Info, s.ID = r, r.ID
		out = append(out, s)
	}
	return out, nil
}

// Get finds a session by name or UUID.
func (c *Client) Get(ctx context.Context, nameOrID string) (*Session, error) {
	if nameOrID == "" || nameOrID == "." || nameOrID == ".." || strings.Contains(nameOrID, "/") {
		return nil, &Error{Op: "session " + nameOrID, Errno: syscall.EINVAL, Reason: "not a valid name or id"}
	}
	if st, err := os.Stat(filepath.Join(c.sessions(), nameOrID)); err == nil && st.IsDir() {
		s := c.session(nameOrID)
		return s, s.Refresh(ctx)
	}
	all, err := c.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range all {
		if strings.EqualFold(s.ID, nameOrID) {
			return s, nil
		}
	}
	return nil, &Error{Op: "session " + nameOrID, Errno: syscall.ENOENT, Reason: "no such session"}
}

func (s *Session) file(parts ...string) string {
	return filepath.Join(append([]string{s.path}, parts...)...)
}

func (s *Session) mark() *errMark {
	return mark(s.file("err"), filepath.Join(s.client.sessions(), "err"))
}

// Refresh re-reads the session's info.json into Info.
func (s *Session) Refresh(ctx context.Context) error {
	m := s.mark()
	b, err := readAll(s.file("info.json"))
	if err != nil {
		return m.wrap("session "+s.Name, err)
	}
	var info SessionInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return fmt.Errorf("session %s: info.json: %w", s.Name, err)
	}
	s.Info, s.ID = info, info.ID
	return nil
}

// State reads the session's current state.
func (s *Session) State(ctx context.Context) (string, error) {
	m := s.mark()
	st, err := readLine(s.file("state"))
	return st, m.wrap("session "+s.Name, err)
}

// WaitReady blocks until the session is usable (READY or RUNNING); an
// error if it ended instead or timeout passed (ETIMEDOUT).
func (s *Session) WaitReady(ctx context.Context, timeout time.Duration) error {
	m := s.mark()
	b, err := readBlocking(ctx, s.file("wait"), timeout)
	if err != nil {
		return m.wrap("session "+s.Name+": wait", err)
	}
	st := strings.TrimSpace(string(b))
	if err := s.Refresh(ctx); err != nil {
		return err
	}
	if st != "READY" && st != "RUNNING" {
		r := ""
		if s.Info.Reason != nil {
			r = ": " + *s.Info.Reason
		}
		return &Error{Op: "session " + s.Name, Reason: "is " + st + ", not usable" + r}
	}
	return nil
}

func (s *Session) ctl(verb string) error {
	m := s.mark()
	return m.wrap("session "+s.Name+": "+verb, writeWhole(s.file("ctl"), []byte(verb+"\n"), 0))
}

// Extend pushes the session's deadline back by d (a session without a
// deadline keeps none).
func (s *Session) Extend(ctx context.Context, d time.Duration) error {
	return s.ctl("extend " + durationText(d))
}

// Pause stops the session's vCPUs, keeping its memory.
func (s *Session) Pause(ctx context.Context) error { return s.ctl("pause") }

// Resume runs a paused session again.
func (s *Session) Resume(ctx context.Context) error { return s.ctl("resume") }

// Close terminates the session; its record stays until Delete.
func (s *Session) Close(ctx context.Context) error { return s.ctl("close") }

// CloseIfOpen closes the session unless it is closed or gone already.
func (s *Session) CloseIfOpen(ctx context.Context) error {
	st, err := s.State(ctx)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if st == "TERMINATING" || st == "TERMINATED" {
		return nil
	}
	return s.Close(ctx)
}

// Delete removes the session (closing it if open) and every trace of it.
func (s *Session) Delete(ctx context.Context) error {
	m := s.mark()
	return m.wrap("delete session "+s.Name, os.Remove(s.path))
}

// Snapshot captures the session as snapshot name (ttl 0: no expiry).
func (s *Session) Snapshot(ctx context.Context, name string, ttl time.Duration) error {
	v := "snapshot " + name
	if ttl > 0 {
		v += " ttl=" + durationText(ttl)
	}
	return s.ctl(v)
}

// UpdateSSHAuthorizedKeys replaces the keys the SSH gateway accepts.
func (s *Session) UpdateSSHAuthorizedKeys(ctx context.Context, keys []string) error {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(strings.TrimSpace(k) + "\n")
	}
	m := s.mark()
	return m.wrap("session "+s.Name+": ssh keys",
		writeWhole(s.file("ssh", "authorized_keys"), []byte(b.String()), os.O_TRUNC))
}

// ---- files: the guest's /home/tenki ----

func (s *Session) host(op, p string) (string, error) {
	rel, ok := guestRel(p)
	if !ok {
		return "", &Error{Op: op + " " + p, Errno: syscall.EACCES,
			Reason: "only paths under " + home + " can be reached"}
	}
	return s.file("files", rel), nil
}

// WriteFile writes a whole guest file, making its parent directories.
func (s *Session) WriteFile(ctx context.Context, path string, data []byte) error {
	h, err := s.host("write", path)
	if err != nil {
		return err
	}
	m := s.mark()
	if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
		return m.wrap("write "+path, err)
	}
	return m.wrap("write "+path, writeWhole(h, data, os.O_CREATE|os.O_TRUNC))
}

// ReadFile reads a whole guest file.
func (s *Session) ReadFile(ctx context.Context, path string) ([]byte, error) {
	h, err := s.host("read", path)
	if err != nil {
		return nil, err
	}
	m := s.mark()
	b, err := readAll(h)
	return b, m.wrap("read "+path, err)
}

// FileEntry is one entry of ListFiles.
type FileEntry struct {
	Name    string
	Path    string
	Size    int64
	IsDir   bool
	Mode    os.FileMode
	ModTime time.Time
}

// ListFiles lists a guest directory, sorted by name.
func (s *Session) ListFiles(ctx context.Context, path string) ([]FileEntry, error) {
	h, err := s.host("list", path)
	if err != nil {
		return nil, err
	}
	m := s.mark()
	ents, err := os.ReadDir(h)
	if err != nil {
		return nil, m.wrap("list "+path, err)
	}
	rel, _ := guestRel(path)
	base := strings.TrimSuffix(home+"/"+rel, "/")
	var out []FileEntry
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, FileEntry{Name: e.Name(), Path: base + "/" + e.Name(), Size: fi.Size(),
			IsDir: fi.IsDir(), Mode: fi.Mode(), ModTime: fi.ModTime()})
	}
	return out, nil
}

// RemoveFile removes a guest file or directory tree.
func (s *Session) RemoveFile(ctx context.Context, path string) error {
	h, err := s.host("remove", path)
	if err != nil {
		return err
	}
	m := s.mark()
	return m.wrap("remove "+path, os.RemoveAll(h))
}

// ---- ports ----

// ExposedPort is a guest port reachable from outside.
type ExposedPort struct {
	Port       int
	URL        string     // the port's own host listener, http://HOST:PORT/
	PreviewURL string     // on the shared preview listener, else URL
	ExpiresAt  *time.Time // nil: never
}

func (s *Session) portsDir() (string, error) {
	d := s.file("ports")
	if st, err := os.Stat(d); err != nil || !st.IsDir() {
		return "", &Error{Op: "session " + s.Name, Errno: syscall.ENOTSUP,
			Reason: "no ports/ (this tenkid does not expose ports)"}
	}
	return d, nil
}

func checkPort(port int) error {
	if port < 1 || port > 65535 {
		return &Error{Op: fmt.Sprintf("port %d", port), Errno: syscall.EINVAL,
			Reason: "port numbers must be between 1 and 65535"}
	}
	return nil
}

func (s *Session) readPort(d string, port int) (*ExposedPort, error) {
	m := s.mark()
	b, err := readAll(filepath.Join(d, strconv.Itoa(port)))
	if err != nil {
		return nil, m.wrap(fmt.Sprintf("port %d of session %s", port, s.Name), err)
	}
	p := &ExposedPort{Port: port}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "url":
			p.URL = v
		case "preview":
			p.PreviewURL = v
		case "expires":
			if t, err := time.Parse(time.RFC3339, v); err == nil {
				p.ExpiresAt = &t
			}
		}
	}
	if p.PreviewURL == "" {
		p.PreviewURL = p.URL
	}
	return p, nil
}

// ExposePort exposes a guest port (WithTTL: for that long, else no expiry).
func (s *Session) ExposePort(ctx context.Context, port int, opts ...Option) (*ExposedPort, error) {
	if err := checkPort(port); err != nil {
		return nil, err
	}
	d, err := s.portsDir()
	if err != nil {
		return nil, err
	}
	var data []byte
	if o := collect(opts); o.ttl > 0 {
		data = []byte(durationText(o.ttl) + "\n")
	}
	m := s.mark()
	if err := writeWhole(filepath.Join(d, strconv.Itoa(port)), data, os.O_CREATE); err != nil {
		return nil, m.wrap(fmt.Sprintf("expose port %d of session %s", port, s.Name), err)
	}
	return s.readPort(d, port)
}

// ListExposedPorts lists the exposed ports, by number.
func (s *Session) ListExposedPorts(ctx context.Context) ([]ExposedPort, error) {
	d, err := s.portsDir()
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(d)
	if err != nil {
		return nil, s.mark().wrap("ports of session "+s.Name, err)
	}
	var nums []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	out := []ExposedPort{}
	for _, n := range nums {
		p, err := s.readPort(d, n)
		if errors.Is(err, fs.ErrNotExist) {
			continue // unexposed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *p)
	}
	return out, nil
}

// UnexposePort removes an exposed port.
func (s *Session) UnexposePort(ctx context.Context, port int) error {
	if err := checkPort(port); err != nil {
		return err
	}
	d, err := s.portsDir()
	if err != nil {
		return err
	}
	m := s.mark()
	return m.wrap(fmt.Sprintf("unexpose port %d of session %s", port, s.Name),
		os.Remove(filepath.Join(d, strconv.Itoa(port))))
}
