// Package tenkisandbox is a Go client of the tenki file tree.  Every call
// opens, reads or writes files under the mount (NewClient's argument, else
// $TENKI_MOUNT, else /tenki); there is no other protocol, and nothing
// beyond the standard library.
package tenkisandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

const (
	defaultMount = "/tenki"
	chunk        = 1 << 20 // the tree's largest single read or write
	home         = "/home/tenki"
)

// Error is a refused operation: the errno the tree returned and the reason
// tenkid appended to the nearest err file.  errors.Is(err, fs.ErrNotExist)
// and the like work through Unwrap.
type Error struct {
	Op     string
	Errno  syscall.Errno
	Reason string
}

func (e *Error) Error() string {
	switch {
	case e.Errno == syscall.ENOTCONN:
		return e.Op + ": tenkid is not running (stale mount)"
	case e.Reason != "" && e.Errno != 0:
		return fmt.Sprintf("%s: %s (%s)", e.Op, e.Reason, e.Errno.Error())
	case e.Reason != "":
		return e.Op + ": " + e.Reason
	default:
		return e.Op + ": " + e.Errno.Error()
	}
}

func (e *Error) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// errMark remembers how long some err files were, so that after a refusal
// the line tenkid appended to the nearest of them can be read back.
type errMark struct {
	files []string
	sizes []int
}

func mark(files ...string) *errMark {
	m := &errMark{files: files}
	for _, f := range files {
		b, _ := readAll(f)
		m.sizes = append(m.sizes, len(b))
	}
	return m
}

func (m *errMark) reason() string {
	for i, f := range m.files {
		b, err := readAll(f)
		if err != nil || len(b) <= m.sizes[i] {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(b[m.sizes[i]:])), "\n")
		line := lines[len(lines)-1]
		// "TIME OBJECT: reason": drop the time
		if sp := strings.IndexByte(line, ' '); sp > 0 && line[0] >= '0' && line[0] <= '9' {
			line = line[sp+1:]
		}
		if line != "" {
			return line
		}
	}
	return ""
}

// wrap turns an error of the os package into an *Error with the reason.
func (m *errMark) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var te *Error
	if errors.As(err, &te) {
		return err
	}
	var en syscall.Errno
	if !errors.As(err, &en) {
		return fmt.Errorf("%s: %w", op, err)
	}
	r := ""
	if en != syscall.ENOTCONN {
		r = m.reason()
	}
	return &Error{Op: op, Errno: en, Reason: r}
}

// openFile opens a file of the tree as a plain blocking *os.File.  os.Open
// would hand the descriptor to Go's poller (epoll), which asks the FUSE
// daemon to poll every file opened; the tree's files need no poller, and
// plain blocking reads are what its streams are made for.
func openFile(path string, flag int, perm uint32) (*os.File, error) {
	fd, err := syscall.Open(path, flag|syscall.O_CLOEXEC, perm)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// readAll reads to EOF (tree files report no useful size).
func readAll(path string) ([]byte, error) {
	f, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out bytes.Buffer
	buf := make([]byte, chunk)
	for {
		n, err := f.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func readLine(path string) (string, error) {
	b, err := readAll(path)
	if err != nil {
		return "", err
	}
	s, _, _ := strings.Cut(string(b), "\n")
	return s, nil
}

// readBlocking reads a blocking file (wait, exit) to EOF, giving up when
// ctx ends or timeout (if > 0) passes.  O_NONBLOCK reads say EAGAIN while
// the file would block.
func readBlocking(ctx context.Context, path string, timeout time.Duration) ([]byte, error) {
	if timeout <= 0 && ctx.Done() == nil {
		return readAll(path) // nothing can end the wait: block in read
	}
	parent := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	// raw syscalls: an O_NONBLOCK *os.File would go to Go's poller
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	var out bytes.Buffer
	buf := make([]byte, 65536)
	for {
		n, err := syscall.Read(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			select {
			case <-ctx.Done():
				if parent.Err() != nil { // the caller's ctx ended
					return nil, parent.Err()
				}
				return nil, syscall.ETIMEDOUT // our timeout passed
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return out.Bytes(), nil
		}
		out.Write(buf[:n])
	}
}

// writeWhole opens, writes everything, closes: value files apply at
// close, so the close's error counts too.
func writeWhole(path string, data []byte, flag int) error {
	f, err := openFile(path, os.O_WRONLY|flag, 0o644)
	if err != nil {
		return err
	}
	for len(data) > 0 {
		n := len(data)
		if n > chunk {
			n = chunk
		}
		if _, err = f.Write(data[:n]); err != nil {
			f.Close()
			return err
		}
		data = data[n:]
	}
	return f.Close()
}

// durationText is d in the tree's syntax (whole seconds, rounded up).
func durationText(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 0 {
		s = 0
	}
	return fmt.Sprintf("%ds", s)
}

// guestRel: "/home/tenki/a/../b" -> "b"; "x" -> "x"; "/tmp/x" -> false.
// ".." is resolved lexically, so nothing climbs out of files/.
func guestRel(p string) (string, bool) {
	if strings.HasPrefix(p, "/") {
		if p != home && !strings.HasPrefix(p, home+"/") {
			return "", false
		}
		p = p[len(home):]
	}
	var out []string
	for _, part := range strings.Split(p, "/") {
		switch part {
		case "", ".":
		case "..":
			if len(out) == 0 {
				return "", false
			}
			out = out[:len(out)-1]
		default:
			out = append(out, part)
		}
	}
	return strings.Join(out, "/"), true
}
