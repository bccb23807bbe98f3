/*
 * Agent transport over a socket: the unix socket libvirt binds for a VM
 * on this host, or tenkid's end of the socketpair that vmm_channel_open
 * pumps to a libvirt stream (a VM on any host).
 */
#include "transport.h"
#include "evloop.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct unix_transport {
	struct transport t;
	int fd;
	bool writing;
};

static void unix_ready(int fd, uint32_t events, void *arg)
{
	struct unix_transport *u = arg;

	u->t.on_ready(&u->t, events & EPOLLIN, events & EPOLLOUT,
		      events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP));
}

static ssize_t unix_send(struct transport *t, const void *buf, size_t len)
{
	struct unix_transport *u = (struct unix_transport *)t;

	return send(u->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static ssize_t unix_recv(struct transport *t, void *buf, size_t len)
{
	struct unix_transport *u = (struct unix_transport *)t;

	return recv(u->fd, buf, len, MSG_DONTWAIT);
}

static void unix_want_write(struct transport *t, bool on)
{
	struct unix_transport *u = (struct unix_transport *)t;

	if (u->writing == on)
		return;
	u->writing = on;
	evloop_mod(u->fd, EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0),
		   unix_ready, u);
}

static void unix_close(struct transport *t)
{
	struct unix_transport *u = (struct unix_transport *)t;

	evloop_del(u->fd);
	close(u->fd);
	free(u);
}

static const struct transport_ops unix_ops = {
    .send = unix_send,
    .recv = unix_recv,
    .want_write = unix_want_write,
    .close = unix_close,
};

struct transport *transport_fd_open(int fd, char *err, size_t errlen)
{
	struct unix_transport *u = calloc(1, sizeof(*u));

	if (!u)
		abort();
	u->t.ops = &unix_ops;
	u->fd = fd;
	if (evloop_add(fd, EPOLLIN | EPOLLRDHUP, unix_ready, u) < 0) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		close(fd);
		free(u);
		return NULL;
	}
	return &u->t;
}

struct transport *transport_unix_open(const char *path, char *err,
				      size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "channel path too long: %s", path);
		return NULL;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return NULL;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "connect %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	return transport_fd_open(fd, err, errlen);
}
