/*
 * Jobs: exec in a new session, timeouts, signals, reaping and forgetting.
 *
 * A job's main process leads its own session and process group (setsid),
 * so `signal`, a timeout and forgetting a timed-out job reach everything it
 * started.  The exec request is answered only once the child has exec'd
 * (or reported why it could not) through a CLOEXEC pipe that the poll loop
 * watches, so a slow chdir or PATH search never stalls the agent.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

struct job *jobs[AGENT_MAX_JOBS];
size_t njobs;

/* sync(2) runs in a child so a long writeback cannot stall the loop. */
#define MAX_SYNCS 16
static struct {
	pid_t pid;
	json_int_t id;
} syncs[MAX_SYNCS];
static size_t nsyncs;

/* What a child that failed to exec tells its parent; < PIPE_BUF: atomic. */
struct exec_report {
	int32_t err;
	char msg[256];
};

struct job *job_find(const char *key)
{
	for (size_t i = 0; i < njobs; i++)
		if (jobs[i]->state != JOB_DEAD &&
		    strcmp(jobs[i]->key, key) == 0)
			return jobs[i];
	return NULL;
}

static struct job *job_by_pid(pid_t pid)
{
	for (size_t i = 0; i < njobs; i++)
		if (jobs[i]->state != JOB_DEAD && jobs[i]->pid == pid)
			return jobs[i];
	return NULL;
}

struct job *job_by_chan_out(uint32_t chan)
{
	struct job *j;

	for (size_t i = 0; i < njobs; i++) {
		j = jobs[i];
		if (j->state != JOB_DEAD &&
		    (j->out[0].chan == chan || j->out[1].chan == chan))
			return j;
	}
	return NULL;
}

struct job *job_by_chan_in(uint32_t chan)
{
	for (size_t i = 0; i < njobs; i++)
		if (jobs[i]->state != JOB_DEAD && jobs[i]->in.chan == chan)
			return jobs[i];
	return NULL;
}

static bool chan_in_use(uint32_t chan)
{
	return chan != 0 &&
	       (job_by_chan_out(chan) != NULL || job_by_chan_in(chan) != NULL ||
		conn_chan_in_use(chan));
}

/* Signal the job's process group; before setsid, only the process. */
static int kill_group(struct job *j, int sig)
{
	if (kill(-j->pid, sig) == 0)
		return 0;
	if (errno == ESRCH && j->state == JOB_STARTING)
		return kill(j->pid, sig);
	return -1;
}

/* ---- the child side of exec ---- */

static void child_fail(int repfd, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

static void child_fail(int repfd, int err, const char *fmt, ...)
{
	struct exec_report r;
	va_list ap;

	memset(&r, 0, sizeof(r));
	r.err = err;
	va_start(ap, fmt);
	vsnprintf(r.msg, sizeof(r.msg), fmt, ap);
	va_end(ap);
	if (write(repfd, &r, sizeof(r)) < 0)
		_exit(126);
	_exit(127);
}

/* Put fd (or /dev/null when there is no channel) on target. */
static int child_stdio(int target, int fd, int flags)
{
	if (fd < 0) {
		fd = open("/dev/null", flags);
		if (fd < 0)
			return -1;
	}
	if (fd == target)
		return fcntl(fd, F_SETFD, 0);
	return dup2(fd, target) < 0 ? -1 : 0;
}

static void child_exec(const struct exec_spec *sp, int in, int out, int err,
		       int slave, int repfd) __attribute__((noreturn));

/* On a pty, the slave is the controlling terminal and all of stdio. */
static void child_tty(int slave, int repfd)
{
	if (ioctl(slave, TIOCSCTTY, 0) < 0)
		child_fail(repfd, errno, "TIOCSCTTY: %s", strerror(errno));
	for (int fd = 0; fd < 3; fd++)
		if (dup2(slave, fd) < 0)
			child_fail(repfd, errno, "stdio: %s", strerror(errno));
	if (slave > 2)
		close(slave);
}

static void child_exec(const struct exec_spec *sp, int in, int out, int err,
		       int slave, int repfd)
{
	extern char **environ;
	sigset_t none;

	/* The agent blocks SIGCHLD and ignores SIGPIPE; a job must not. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	if (setsid() < 0)
		child_fail(repfd, errno, "setsid: %s", strerror(errno));
	if (slave >= 0)
		child_tty(slave, repfd);
	else if (child_stdio(0, in, O_RDONLY) < 0 ||
		 child_stdio(1, out, O_WRONLY) < 0 ||
		 child_stdio(2, err, O_WRONLY) < 0)
		child_fail(repfd, errno, "stdio: %s", strerror(errno));
	if (chdir(sp->cwd) < 0)
		child_fail(repfd, errno, "cwd %s: %s", sp->cwd,
			   strerror(errno));
	/* execvp searches the PATH of environ, so make it the job's. */
	environ = sp->envp;
	execvp(sp->argv[0], sp->argv);
	if (errno == ENOENT && strchr(sp->argv[0], '/') == NULL)
		child_fail(repfd, ENOENT, "%s: command not found", sp->argv[0]);
	child_fail(repfd, errno, "%s: %s", sp->argv[0], strerror(errno));
}

/* ---- the parent side ---- */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/*
 * A pipe for one stdio stream, or none when the request gave no channel.
 * p[keep] stays with the agent, non-blocking; the other end is the child's.
 */
static int stdio_pipe(uint32_t chan, int p[2], int keep)
{
	if (chan == 0)
		return 0;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	if (set_nonblock(p[keep]) < 0)
		return -1;
	/* Fewer, larger reads for output; a failure only costs speed. */
	if (keep == 0)
		(void)fcntl(p[0], F_SETPIPE_SZ, STREAM_PIPE_SIZE);
	return 0;
}

/*
 * A pseudo-terminal of rows x cols: master (non-blocking, the agent's) and
 * slave (the child's controlling tty).  Both CLOEXEC; the child dup2s.
 */
static int open_pty(const struct exec_spec *sp, int *master, int *slave)
{
	struct winsize ws = {.ws_row = sp->rows, .ws_col = sp->cols};
	char name[64];

	*master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*master < 0)
		return -1;
	if (grantpt(*master) < 0 || unlockpt(*master) < 0 ||
	    ptsname_r(*master, name, sizeof(name)) != 0 ||
	    set_nonblock(*master) < 0)
		return -1;
	*slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*slave < 0)
		return -1;
	return ioctl(*master, TIOCSWINSZ, &ws);
}

static int check_new_job(const struct exec_spec *sp, char *msg, size_t msglen)
{
	uint32_t ch[3] = {sp->chan_in, sp->chan_out, sp->chan_err};

	if (job_find(sp->key) != NULL) {
		snprintf(msg, msglen, "job %s exists", sp->key);
		return EEXIST;
	}
	for (int i = 0; i < 3; i++) {
		if (chan_in_use(ch[i])) {
			snprintf(msg, msglen, "channel %u is in use", ch[i]);
			return EEXIST;
		}
	}
	if (njobs >= AGENT_MAX_JOBS) {
		snprintf(msg, msglen, "too many jobs (%d held)",
			 AGENT_MAX_JOBS);
		return EAGAIN;
	}
	return 0;
}

int job_start(const struct exec_spec *sp, json_int_t id, char *msg,
	      size_t msglen)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
	int rep[2] = {-1, -1};
	int master = -1, slave = -1, master_in = -1, master_ctl = -1;
	struct job *j = NULL;
	int e;

	e = check_new_job(sp, msg, msglen);
	if (e != 0)
		return e;
	j = calloc(1, sizeof(*j));
	if (j == NULL) {
		e = ENOMEM;
		snprintf(msg, msglen, "out of memory");
		goto fail;
	}
	if (sp->pty) {
		/* stdout reads the master, stdin writes a dup of it (closed
		 * at the stdin EOF), a third copy stays for resize. */
		if (open_pty(sp, &master, &slave) < 0 ||
		    (master_in = fcntl(master, F_DUPFD_CLOEXEC, 0)) < 0 ||
		    (master_ctl = fcntl(master, F_DUPFD_CLOEXEC, 0)) < 0) {
			e = errno;
			snprintf(msg, msglen, "pty: %s", strerror(e));
			goto fail;
		}
	}
	if ((!sp->pty && (stdio_pipe(sp->chan_in, in, 1) < 0 ||
			  stdio_pipe(sp->chan_out, out, 0) < 0 ||
			  stdio_pipe(sp->chan_err, err, 0) < 0)) ||
	    pipe2(rep, O_CLOEXEC) < 0 || set_nonblock(rep[0]) < 0) {
		e = errno;
		snprintf(msg, msglen, "pipe: %s", strerror(e));
		goto fail;
	}
	j->pid = fork();
	if (j->pid < 0) {
		e = errno;
		snprintf(msg, msglen, "fork: %s", strerror(e));
		goto fail;
	}
	if (j->pid == 0)
		child_exec(sp, in[0], out[1], err[1], slave, rep[1]);

	close_fd(&slave);
	if (sp->pty) {
		in[1] = sp->chan_in ? master_in : -1;
		out[0] = sp->chan_out ? master : -1;
		if (!sp->chan_in)
			close_fd(&master_in);
		if (!sp->chan_out)
			close_fd(&master);
	}
	j->ptyfd = master_ctl;
	close_fd(&in[0]);
	close_fd(&out[1]);
	close_fd(&err[1]);
	close_fd(&rep[1]);
	snprintf(j->key, sizeof(j->key), "%s", sp->key);
	j->state = JOB_STARTING;
	j->req_id = id;
	j->errfd = rep[0];
	if (sp->timeout_ms > 0)
		j->timeout_at = now_ms() + (int64_t)sp->timeout_ms;
	istream_init(&j->in, sp->chan_in, in[1]);
	ostream_init(&j->out[0], sp->chan_out, out[0]);
	ostream_init(&j->out[1], sp->chan_err, err[0]);
	jobs[njobs++] = j;
	alog(L_DEBUG, "job %s: pid %d started", j->key, (int)j->pid);
	return 0;

fail:
	close_fd(&in[0]);
	close_fd(&in[1]);
	close_fd(&out[0]);
	close_fd(&out[1]);
	close_fd(&err[0]);
	close_fd(&err[1]);
	close_fd(&rep[0]);
	close_fd(&rep[1]);
	close_fd(&master);
	close_fd(&slave);
	close_fd(&master_in);
	close_fd(&master_ctl);
	free(j);
	return e;
}

/* Drop the job and its buffers; the memory goes at the top of the loop. */
static void job_discard(struct job *j)
{
	close_fd(&j->errfd);
	close_fd(&j->ptyfd);
	ostream_free(&j->out[0]);
	ostream_free(&j->out[1]);
	istream_free(&j->in);
	j->state = JOB_DEAD;
}

static void job_ended(struct job *j, int status)
{
	int64_t now = now_ms();

	j->state = JOB_ENDED;
	j->status = status;
	j->timeout_at = 0;
	istream_abandon(&j->in);
	/* Background children may hold the pipes: give them EXIT_GRACE_MS. */
	if (j->out[0].fd >= 0 || j->out[1].fd >= 0)
		j->close_at = now + EXIT_GRACE_MS;
	alog(L_DEBUG, "job %s: pid %d ended, status 0x%x", j->key, (int)j->pid,
	     status);
	event_exit(j);
}

/* The exec report pipe is readable: EOF means exec worked. */
void job_on_errpipe(struct job *j)
{
	struct exec_report r;
	json_t *extra;
	ssize_t n;

	memset(&r, 0, sizeof(r));
	n = read(j->errfd, &r, sizeof(r));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	close_fd(&j->errfd);
	if (n >= (ssize_t)sizeof(r.err)) {
		r.msg[sizeof(r.msg) - 1] = '\0';
		resp_error(j->req_id, r.err > 0 ? r.err : EIO, "%s", r.msg);
		alog(L_DEBUG, "job %s: %s", j->key, r.msg);
		job_discard(j);
		return;
	}
	j->state = JOB_RUNNING;
	extra = json_pack("{s:i}", "pid", (json_int_t)j->pid);
	resp_ok(j->req_id, extra);
	if (j->reaped_early)
		job_ended(j, j->status);
}

static bool sync_done(pid_t pid)
{
	for (size_t i = 0; i < nsyncs; i++) {
		if (syncs[i].pid != pid)
			continue;
		resp_ok(syncs[i].id, NULL);
		syncs[i] = syncs[--nsyncs];
		return true;
	}
	return false;
}

int sync_start(json_int_t id)
{
	pid_t pid;

	if (nsyncs < MAX_SYNCS) {
		pid = fork();
		if (pid == 0) {
			sync();
			_exit(0);
		}
		if (pid > 0) {
			syncs[nsyncs].pid = pid;
			syncs[nsyncs].id = id;
			nsyncs++;
			return 0;
		}
	}
	sync(); /* no child to spare: do it here */
	resp_ok(id, NULL);
	return 0;
}

/*
 * SIGCHLD: reap everything, orphans included (we are PID 1 or a
 * subreaper), and attribute exits by pid.
 */
void jobs_reap(void)
{
	struct job *j;
	pid_t pid;
	int st;

	for (;;) {
		pid = waitpid(-1, &st, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return;
		if (sync_done(pid))
			continue;
		j = job_by_pid(pid);
		if (j == NULL)
			continue;
		if (j->state == JOB_STARTING) {
			j->reaped_early = true;
			j->status = st;
			continue;
		}
		if (j->state == JOB_RUNNING)
			job_ended(j, st);
	}
}

static void job_timers(struct job *j, int64_t now)
{
	if (j->state == JOB_RUNNING && j->timeout_at && now >= j->timeout_at) {
		j->timeout_at = 0;
		j->timed_out = true;
		alog(L_DEBUG, "job %s: timed out, SIGTERM to its group",
		     j->key);
		kill_group(j, SIGTERM);
		j->kill_at = now + KILL_GRACE_MS;
	}
	if (j->kill_at && now >= j->kill_at) {
		j->kill_at = 0;
		kill_group(j, SIGKILL); /* ESRCH: nothing was left */
	}
	if (j->close_at && now >= j->close_at) {
		j->close_at = 0;
		for (int k = 0; k < 2; k++) {
			if (j->out[k].fd >= 0) {
				j->out[k].draining = true;
				j->out[k].drained = 0;
			}
		}
	}
}

void jobs_timers(int64_t now)
{
	for (size_t i = 0; i < njobs; i++)
		if (jobs[i]->state != JOB_DEAD)
			job_timers(jobs[i], now);
}

/* The next armed timer, 0 when none. */
int64_t jobs_next_deadline(void)
{
	int64_t next = 0;
	struct job *j;

	for (size_t i = 0; i < njobs; i++) {
		j = jobs[i];
		if (j->state == JOB_DEAD)
			continue;
		if (j->state == JOB_RUNNING)
			next = deadline_min(next, j->timeout_at);
		next = deadline_min(next, j->kill_at);
		next = deadline_min(next, j->close_at);
	}
	return next;
}

void jobs_add_polls(void)
{
	struct job *j;

	for (size_t i = 0; i < njobs; i++) {
		j = jobs[i];
		if (j->state == JOB_DEAD)
			continue;
		if (j->state == JOB_STARTING) {
			poll_add(j->errfd, POLLIN, PE_START, j);
			continue;
		}
		for (int k = 0; k < 2; k++)
			if (!j->out[k].draining && ostream_may_read(&j->out[k]))
				poll_add(j->out[k].fd, POLLIN, PE_OUT,
					 &j->out[k]);
		if (j->in.fd >= 0 && j->in.buf.len > 0)
			poll_add(j->in.fd, POLLOUT, PE_IN, &j->in);
	}
}

void jobs_free_dead(void)
{
	size_t i = 0;

	while (i < njobs) {
		if (jobs[i]->state != JOB_DEAD) {
			i++;
			continue;
		}
		free(jobs[i]);
		jobs[i] = jobs[--njobs];
		jobs[njobs] = NULL;
	}
}

int job_signal(const char *key, int sig, char *msg, size_t msglen)
{
	struct job *j = job_find(key);
	int e;

	if (j == NULL) {
		snprintf(msg, msglen, "no job %s", key);
		return ENOENT;
	}
	if (kill_group(j, sig) < 0) {
		e = errno;
		if (e == ESRCH)
			snprintf(msg, msglen, "job %s: no process left", key);
		else
			snprintf(msg, msglen, "job %s: %s", key, strerror(e));
		return e;
	}
	return 0;
}

int job_forget(const char *key, char *msg, size_t msglen)
{
	struct job *j = job_find(key);

	if (j == NULL) {
		snprintf(msg, msglen, "no job %s", key);
		return ENOENT;
	}
	if (j->state != JOB_ENDED) {
		snprintf(msg, msglen, "job %s is running", key);
		return EBUSY;
	}
	/* A timed-out job's group was due its SIGKILL: do not lose it. */
	if (j->kill_at)
		kill_group(j, SIGKILL);
	job_discard(j);
	return 0;
}

int job_resize(const char *key, unsigned rows, unsigned cols, char *msg,
	       size_t msglen)
{
	struct winsize ws = {.ws_row = (unsigned short)rows,
			     .ws_col = (unsigned short)cols};
	struct job *j = job_find(key);

	if (j == NULL) {
		snprintf(msg, msglen, "no job %s", key);
		return ENOENT;
	}
	if (j->ptyfd < 0) {
		snprintf(msg, msglen, "job %s has no terminal", key);
		return ENOTTY;
	}
	/* The kernel sends SIGWINCH to the terminal's foreground group. */
	if (ioctl(j->ptyfd, TIOCSWINSZ, &ws) < 0) {
		snprintf(msg, msglen, "job %s: TIOCSWINSZ: %s", key,
			 strerror(errno));
		return errno;
	}
	return 0;
}

/* --no-init shutdown: take every job's group down with us. */
void jobs_kill_all(void)
{
	for (size_t i = 0; i < njobs; i++)
		if (jobs[i]->state != JOB_DEAD)
			kill_group(jobs[i], SIGKILL);
}
