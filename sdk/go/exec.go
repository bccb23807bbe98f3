package tenkisandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ExecStatus is a job's status line: "running", "exited N", "killed SIG",
// "timeout" or "failed REASON".
type ExecStatus string

// IsSuccess: the command exited with code 0.
func (s ExecStatus) IsSuccess() bool { return s == "exited 0" }

// IsTimedOut: the job's timeout ended it.
func (s ExecStatus) IsTimedOut() bool { return s == "timeout" }

// IsFailed: the command ended without success (non-zero exit, a signal,
// a timeout, or it could not start).
func (s ExecStatus) IsFailed() bool { return s != "running" && s != "" && !s.IsSuccess() }

// ExecResult is what a finished job left.
type ExecResult struct {
	JobID    string
	Status   ExecStatus
	ExitCode int
	Stdout   []byte
	Stderr   []byte
	Duration time.Duration
}

func (r *ExecResult) StdoutString() string { return string(r.Stdout) }
func (r *ExecResult) StderrString() string { return string(r.Stderr) }

// Err is nil when the command succeeded, else a *CommandError whose
// message holds the status and stderr.
func (r *ExecResult) Err() error {
	if r.Status.IsSuccess() {
		return nil
	}
	return &CommandError{Result: r}
}

// CommandError is a command that did not succeed.
type CommandError struct{ Result *ExecResult }

func (e *CommandError) Error() string {
	what := string(e.Result.Status)
	if e.Result.Status.IsTimedOut() {
		what = "timed out"
	}
	msg := fmt.Sprintf("command failed (%s, exit=%d)", what, e.Result.ExitCode)
	if s := strings.TrimSpace(e.Result.StderrString()); s != "" {
		msg += ": " + s
	}
	return msg
}

// Process is a started job.  Stdout and Stderr are its live streams (each
// read ends when the stream has no more yet; EOF when it ended).
type Process struct {
	s      *Session
	JobID  string
	dir    string
	Stdout io.ReadCloser
	Stderr io.ReadCloser
	stdin  *os.File
	closed bool
}

func (s *Session) start(ctx context.Context, cmd string, shell bool, o *options) (*Process, error) {
	op := "exec in session " + s.Name
	m := s.mark()
	job, err := readLine(s.file("exec", "clone"))
	if err != nil {
		return nil, m.wrap(op, err)
	}
	p := &Process{s: s, JobID: job, dir: s.file("exec", job)}
	put := func(name, text string) error {
		return m.wrap(op+": "+name, writeWhole(filepath.Join(p.dir, name), []byte(text), os.O_TRUNC))
	}
	err = func() error {
		if len(o.env) > 0 {
			keys := make([]string, 0, len(o.env))
			for k := range o.env {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var b strings.Builder
			for _, k := range keys {
				b.WriteString(k + "=" + o.env[k] + "\n")
			}
			if err := put("env", b.String()); err != nil {
				return err
			}
		}
		if o.cwd != "" {
			if err := put("cwd", o.cwd+"\n"); err != nil {
				return err
			}
		}
		if o.timeout > 0 {
			if err := put("timeout", durationText(o.timeout)+"\n"); err != nil {
				return err
			}
		}
		if shell {
			return put("cmd", cmd+"\n")
		}
		var b strings.Builder
		for _, a := range append([]string{cmd}, o.args...) {
			if strings.Contains(a, "\n") {
				return fmt.Errorf("%s: an argument holds a newline, which argv cannot carry: use Shell", op)
			}
			b.WriteString(a + "\n")
		}
		return put("argv", b.String())
	}()
	if err != nil {
		os.Remove(p.dir) // never started: leave no job behind
		return nil, err
	}
	if p.Stdout, err = openFile(filepath.Join(p.dir, "stdout"), os.O_RDONLY, 0); err == nil {
		p.Stderr, err = openFile(filepath.Join(p.dir, "stderr"), os.O_RDONLY, 0)
	}
	if err != nil {
		return nil, m.wrap(op, err)
	}
	return p, nil
}

// Start starts cmd (WithArgs, WithEnv(s), WithCwd, WithTimeout) and
// returns at once; its stdin stays open until CloseStdin.
func (s *Session) Start(ctx context.Context, cmd string, opts ...Option) (*Process, error) {
	return s.start(ctx, cmd, false, collect(opts))
}

// Write sends data to the job's stdin.
func (p *Process) Write(data []byte) (int, error) {
	m := p.s.mark()
	if p.stdin == nil {
		f, err := openFile(filepath.Join(p.dir, "stdin"), os.O_WRONLY, 0)
		if err != nil {
			return 0, m.wrap("job "+p.JobID+": stdin", err)
		}
		p.stdin = f
	}
	n, err := p.stdin.Write(data)
	return n, m.wrap("job "+p.JobID+": stdin", err)
}

// CloseStdin gives the job EOF on stdin (a job that ended is fine).
func (p *Process) CloseStdin() error {
	if p.closed {
		return nil
	}
	p.closed = true
	if p.stdin != nil {
		return p.stdin.Close()
	}
	writeWhole(filepath.Join(p.dir, "ctl"), []byte("eof\n"), 0)
	return nil
}

// Kill signals the job's process group (sig "" is TERM).
func (p *Process) Kill(sig string) error {
	v := "kill\n"
	if sig != "" {
		v = "kill " + sig + "\n"
	}
	return p.s.mark().wrap("job "+p.JobID+": kill", writeWhole(filepath.Join(p.dir, "ctl"), []byte(v), 0))
}

// Wait blocks until the job ends and returns its result.  If ctx ends
// first the job is killed and ctx's error returned.
func (p *Process) Wait(ctx context.Context) (*ExecResult, error) {
	defer p.Stdout.Close()
	defer p.Stderr.Close()
	m := p.s.mark()
	code, err := readBlocking(ctx, filepath.Join(p.dir, "exit"), 0)
	if err != nil {
		if ctx.Err() != nil {
			p.Kill("KILL")
		}
		return nil, m.wrap("job "+p.JobID, err)
	}
	r := &ExecResult{JobID: p.JobID}
	r.ExitCode, _ = strconv.Atoi(strings.TrimSpace(string(code)))
	if r.Stdout, err = readAll(filepath.Join(p.dir, "stdout")); err == nil {
		r.Stderr, err = readAll(filepath.Join(p.dir, "stderr"))
	}
	if err != nil {
		return nil, m.wrap("job "+p.JobID, err)
	}
	st, _ := readLine(filepath.Join(p.dir, "status"))
	r.Status = ExecStatus(st)
	if b, err := readAll(filepath.Join(p.dir, "info.json")); err == nil {
		var info struct {
			DurationMS int64 `json:"duration_ms"`
		}
		if json.Unmarshal(b, &info) == nil {
			r.Duration = time.Duration(info.DurationMS) * time.Millisecond
		}
	}
	return r, nil
}

func (s *Session) run(ctx context.Context, p *Process, o *options) (*ExecResult, error) {
	if o.hasIn {
		if _, err := p.Write(o.stdin); err != nil {
			p.Kill("KILL")
			return nil, err
		}
	}
	p.CloseStdin()
	return p.Wait(ctx)
}

// Exec runs cmd with WithArgs (no shell), WithEnv(s), WithCwd,
// WithTimeout, WithStdin, and returns its result once it ended.  err is
// about running it; the command's own failure is in result.Status.
func (s *Session) Exec(ctx context.Context, cmd string, opts ...Option) (*ExecResult, error) {
	o := collect(opts)
	p, err := s.start(ctx, cmd, false, o)
	if err != nil {
		return nil, err
	}
	return s.run(ctx, p, o)
}

// Shell runs one shell line (/bin/sh -c) like Exec.
func (s *Session) Shell(ctx context.Context, line string, opts ...Option) (*ExecResult, error) {
	o := collect(opts)
	p, err := s.start(ctx, line, true, o)
	if err != nil {
		return nil, err
	}
	return s.run(ctx, p, o)
}
