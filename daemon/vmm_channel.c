/*
 * vmm_channel: a VM's agent channel over the libvirt connection.
 *
 * virDomainOpenChannel gives a virStream that reaches the channel of a VM
 * on any host libvirt reaches (qemu+tcp://, qemu+ssh://, qemu+tls://).
 * tenkid's agent connection wants a socket it can poll in its own event
 * loop, so each stream is pumped to and from one end of a socketpair by
 * callbacks in libvirt's event loop thread (the one vmm_libvirt.c runs,
 * which also carries the keepalives).  The pump holds no tenkid lock and
 * only ever does non-blocking I/O on both sides, like `virsh console`.
 *
 * Interest follows the buffers: a side is read only while the buffer
 * towards the other side is empty, and waited on for writability only
 * while that buffer holds bytes, so a slow reader back-pressures the
 * writer instead of growing memory.
 *
 * Either side ending ends both: a stream error, EOF or hangup (libvirtd
 * restarted, the VM stopped or was saved, the host went away) closes the
 * pump's socket end, which tenkid sees as EOF; tenkid closing its end
 * aborts the stream.
 */
#include "vmm_libvirt.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libvirt/virterror.h>

#include "domxml.h"
#include "log.h"

#define PUMP_BUF    (256 * 1024)
#define PUMP_ROUNDS 16 /* per wake-up, so one VM cannot hold the loop */

struct pump {
	/* The opener's, the fd watch's (dropped by its free hook) and the
	 * stream callback's (dropped by pump_end: libvirt's remote driver
	 * never calls a stream callback's free hook, so one given to it
	 * would leak every pump). */
	int refs;
	virStreamPtr st;
	int fd;	   /* the pump's end of the socketpair */
	int watch; /* virEventAddHandle id */
	bool ended;
	char name[64];
	char s2f[PUMP_BUF]; /* from the guest, towards tenkid */
	size_t s2f_len, s2f_off;
	char f2s[PUMP_BUF]; /* from tenkid, towards the guest */
	size_t f2s_len, f2s_off;
};

static int live_pumps; /* atomic: for the wait at shutdown */

static void pump_unref(void *opaque)
{
	struct pump *p = opaque;

	if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_SEQ_CST) > 0)
		return;
	if (p->st != NULL)
		virStreamFree(p->st);
	if (p->fd >= 0)
		close(p->fd);
	free(p);
	__atomic_sub_fetch(&live_pumps, 1, __ATOMIC_SEQ_CST);
}

void vmm_channels_wait(int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 10) {
		if (__atomic_load_n(&live_pumps, __ATOMIC_SEQ_CST) == 0)
			return;
		usleep(10 * 1000);
	}
	log_debug("%d channel pump(s) still open at exit",
		  __atomic_load_n(&live_pumps, __ATOMIC_SEQ_CST));
}

/* Event thread.  Removes both callbacks and drops the stream's reference;
 * the watch's free hook drops the last, which closes the socket end. */
static void pump_end(struct pump *p, const char *why)
{
	if (p->ended)
		return;
	p->ended = true;
	log_debug("%s: channel stream ended: %s", p->name, why);
	virStreamEventRemoveCallback(p->st);
	virStreamAbort(p->st);
	virEventRemoveHandle(p->watch);
	/* Tenkid sees EOF at once, whenever libvirt frees the handle. */
	shutdown(p->fd, SHUT_RDWR);
	/* The stream callback's reference: it is not called again.  The
	 * watch's keeps p until its free hook, after this dispatch. */
	pump_unref(p);
}

/* Move what can be moved without blocking; false when the pump ended. */
static bool pump_move(struct pump *p)
{
	bool progress = true;
	ssize_t n;

	for (int round = 0; progress && round < PUMP_ROUNDS; round++) {
		progress = false;
		if (p->s2f_off == p->s2f_len) {
			p->s2f_off = p->s2f_len = 0;
			n = virStreamRecv(p->st, p->s2f, sizeof(p->s2f));
			if (n == 0 || n == -1) {
				pump_end(p, n == 0 ? "EOF"
						   : virGetLastErrorMessage());
				return false;
			}
			if (n > 0) {
				p->s2f_len = (size_t)n;
				progress = true;
			}
		}
		if (p->s2f_off < p->s2f_len) {
			n = send(p->fd, p->s2f + p->s2f_off,
				 p->s2f_len - p->s2f_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				pump_end(p, strerror(errno));
				return false;
			}
			if (n > 0) {
				p->s2f_off += (size_t)n;
				progress = true;
			}
		}
		if (p->f2s_off == p->f2s_len) {
			p->f2s_off = p->f2s_len = 0;
			n = recv(p->fd, p->f2s, sizeof(p->f2s), MSG_DONTWAIT);
			if (n == 0 ||
			    (n < 0 && errno != EAGAIN && errno != EINTR)) {
				pump_end(p, n == 0 ? "closed by tenkid"
						   : strerror(errno));
				return false;
			}
			if (n > 0) {
				p->f2s_len = (size_t)n;
				progress = true;
			}
		}
		if (p->f2s_off < p->f2s_len) {
			n = virStreamSend(p->st, p->f2s + p->f2s_off,
					  p->f2s_len - p->f2s_off);
			if (n == -1) {
				pump_end(p, virGetLastErrorMessage());
				return false;
			}
			if (n > 0) {
				p->f2s_off += (size_t)n;
				progress = true;
			}
		}
	}
	return true;
}

static void pump_interest(struct pump *p)
{
	bool to_fd = p->s2f_off < p->s2f_len, to_st = p->f2s_off < p->f2s_len;
	int se = VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP;
	int fe = VIR_EVENT_HANDLE_ERROR | VIR_EVENT_HANDLE_HANGUP;

	se |= to_fd ? 0 : VIR_STREAM_EVENT_READABLE;
	se |= to_st ? VIR_STREAM_EVENT_WRITABLE : 0;
	fe |= to_st ? 0 : VIR_EVENT_HANDLE_READABLE;
	fe |= to_fd ? VIR_EVENT_HANDLE_WRITABLE : 0;
	virStreamEventUpdateCallback(p->st, se);
	/* The stream's callback can run before the socket's watch is
	 * registered; the watch starts out wanting reads, which is right
	 * while nothing waits to be written to the socket. */
	if (p->watch >= 0)
		virEventUpdateHandle(p->watch, fe);
}

static void pump_run(struct pump *p)
{
	if (!p->ended && pump_move(p))
		pump_interest(p);
}

static void on_stream(virStreamPtr st, int events, void *opaque)
{
	struct pump *p = opaque;

	if (events & VIR_STREAM_EVENT_ERROR) {
		pump_end(p, "stream error");
		return;
	}
	/* HANGUP: read what is left; the read then sees EOF. */
	pump_run(p);
}

static void on_fd(int watch, int fd, int events, void *opaque)
{
	struct pump *p = opaque;

	if (events & VIR_EVENT_HANDLE_ERROR) {
		pump_end(p, "socket error");
		return;
	}
	pump_run(p);
}

/* The stream of the domain's agent channel (FORCE: a stream a previous
 * tenkid left open is stolen, not waited for). */
static virStreamPtr channel_stream(virConnectPtr c, const char *domname,
				   char *err)
{
	virDomainPtr dom;
	virStreamPtr st = NULL;

	if ((dom = virDomainLookupByName(c, domname)) == NULL) {
		vmm_libvirt_err(err, "cannot look up %s", domname);
		return NULL;
	}
	if ((st = virStreamNew(c, VIR_STREAM_NONBLOCK)) == NULL) {
		vmm_libvirt_err(err, "no stream for %s", domname);
	} else if (virDomainOpenChannel(dom, DOMXML_AGENT_CHANNEL, st,
					VIR_DOMAIN_CHANNEL_FORCE) < 0) {
		vmm_libvirt_err(err, "cannot open the channel of %s", domname);
		virStreamFree(st);
		st = NULL;
	}
	virDomainFree(dom);
	return st;
}

int vmm_channel_open(struct vmm_host *h, const char *domname, char *err)
{
	struct pump *p;
	virConnectPtr c;
	int sv[2] = {-1, -1};

	if ((c = vmm_libvirt_conn(h, err)) == NULL)
		return -1;
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		vmm_seterr(err, "out of memory");
		goto fail;
	}
	__atomic_add_fetch(&live_pumps, 1, __ATOMIC_SEQ_CST);
	p->refs = 1;
	p->fd = -1;
	p->watch = -1;
	snprintf(p->name, sizeof(p->name), "%s", domname);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0,
		       sv) < 0) {
		vmm_seterr(err, "socketpair: %s", strerror(errno));
		goto fail;
	}
	p->fd = sv[1];
	if ((p->st = channel_stream(c, domname, err)) == NULL)
		goto fail;
	p->refs += 2;
	if (virStreamEventAddCallback(p->st,
				      VIR_STREAM_EVENT_READABLE |
					  VIR_STREAM_EVENT_ERROR |
					  VIR_STREAM_EVENT_HANGUP,
				      on_stream, p, NULL) < 0) {
		p->refs -= 2;
		vmm_libvirt_err(err, "stream events of %s", domname);
		virStreamAbort(p->st);
		goto fail;
	}
	p->watch = virEventAddHandle(p->fd,
				     VIR_EVENT_HANDLE_READABLE |
					 VIR_EVENT_HANDLE_ERROR |
					 VIR_EVENT_HANDLE_HANGUP,
				     on_fd, p, pump_unref);
	if (p->watch < 0) {
		p->refs -= 2; /* the watch's, and the stream's: removed here */
		vmm_seterr(err, "cannot watch the channel socket of %s",
			   domname);
		virStreamEventRemoveCallback(p->st);
		virStreamAbort(p->st);
		goto fail;
	}
	pump_unref(p); /* the callbacks own it now */
	virConnectClose(c);
	return sv[0];
fail:
	if (sv[0] >= 0)
		close(sv[0]);
	if (p != NULL)
		pump_unref(p);
	virConnectClose(c);
	return -1;
}
