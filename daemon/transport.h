/*
 * The agent transport: one byte stream to one guest's agent port.
 *
 * Two backends share this interface: a direct unix socket to the channel
 * libvirt made on this host (transport_unix_open), and a libvirt stream
 * (virDomainOpenChannel) for VMs on remote hosts, which vmm_channel_open
 * pumps to a socketpair whose other end is given here (transport_fd_open).
 * The agent connection above it (agentconn.c) never knows which one it
 * has.
 *
 * All calls are non-blocking and made with model_lock held; the backend
 * calls on_ready from the event loop when the stream can be read or
 * written, or has ended.
 */
#ifndef TENKI_TRANSPORT_H
#define TENKI_TRANSPORT_H

#include <stdbool.h>
#include <sys/types.h>

struct transport;

struct transport_ops {
	/* >0 bytes moved; 0 at EOF (recv only); -1 with errno (EAGAIN). */
	ssize_t (*send)(struct transport *t, const void *buf, size_t len);
	ssize_t (*recv)(struct transport *t, void *buf, size_t len);
	/* Ask for (or stop asking for) writability notifications. */
	void (*want_write)(struct transport *t, bool on);
	void (*close)(struct transport *t);
};

struct transport {
	const struct transport_ops *ops;
	void (*on_ready)(struct transport *t, bool readable, bool writable,
			 bool hangup);
	void *opaque;
};

/* Connect to a unix stream socket path (the VM's channel on this host). */
struct transport *transport_unix_open(const char *path, char *err,
				      size_t errlen);

/* A connected, non-blocking stream socket (taken over, closed on error). */
struct transport *transport_fd_open(int fd, char *err, size_t errlen);

#endif
