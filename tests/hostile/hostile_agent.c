/*
 * A hostile guest agent, for tests only (tests/e2e/hostile.bats).
 *
 * It replaces tenki-agent as PID 1 in a test image and speaks just enough
 * of the agent protocol (docs/protocol.md) to get a session going, then
 * misbehaves.  What it does is chosen by the session's name, which
 * arrives as "hostname" in tenkid's HELLO: the word before the first '-'
 * (garbage-1 -> "garbage").  tenkid must survive every mode, stay
 * responsive for other sessions, keep its memory bounded, and fail only
 * this session, with a reason.
 *
 *   nohello    never answers HELLO
 *   badproto   answers HELLO with another protocol version
 *   garbage    after HELLO, random bytes
 *   oversize   after HELLO, a RESP header claiming 2 GiB
 *   deepjson   after HELLO, a RESP nested 30000 levels deep
 *   noid       answers every request without an id
 *   wrongid    answers every request with ids that were never sent
 *   gap        answers exec, then stdout DATA far beyond the stream's end
 *   flood      answers exec, then stdout DATA without end, ignoring ACKs
 *   chans      DATA on 100000 channels it was never given
 *   exitspam   exit events for jobs that do not exist (tolerated: they
 *              may be late exits of removed jobs)
 *   pingflood  PINGs without end, never reading tenkid's PONGs
 *   silent     answers HELLO, then never reads or writes again
 *   mute       reads every request and never answers
 */
#include "proto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME "org.tenki.agent.0"

static int port = -1;
static uint8_t rbuf[2 * 1024 * 1024];
static size_t rlen;

static void msleep(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void say(const char *fmt, const char *arg)
{
	/* The console is the serial port: the test's console file. */
	dprintf(2, "hostile-agent: ");
	dprintf(2, fmt, arg);
	dprintf(2, "\n");
}

static void port_open(void)
{
	char path[300], name[64], dev[300];
	struct dirent *de;
	DIR *d;

	for (;;) {
		d = opendir("/sys/class/virtio-ports");
		while (d && (de = readdir(d))) {
			snprintf(path, sizeof(path),
				 "/sys/class/virtio-ports/%s/name", de->d_name);
			int fd = open(path, O_RDONLY);
			if (fd < 0)
				continue;
			ssize_t n = read(fd, name, sizeof(name) - 1);
			close(fd);
			name[n > 0 ? n : 0] = '\0';
			name[strcspn(name, "\n")] = '\0';
			if (strcmp(name, PORT_NAME) != 0)
				continue;
			snprintf(dev, sizeof(dev), "/dev/%s", de->d_name);
			port = open(dev, O_RDWR | O_NOCTTY);
			if (port >= 0) {
				closedir(d);
				say("opened %s", dev);
				return;
			}
		}
		if (d)
			closedir(d);
		msleep(50);
	}
}

/* Blocking write of everything; false when the host went away. */
static bool put(const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = write(port, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		b += w;
		n -= (size_t)w;
	}
	return true;
}

static bool frame(uint8_t type, uint32_t chan, const void *p, size_t n)
{
	uint8_t hdr[PROTO_HDR_LEN];

	proto_encode_hdr(hdr, type, chan, (uint32_t)n);
	return put(hdr, sizeof(hdr)) && put(p, n);
}

static bool json_frame(uint8_t type, const char *txt)
{
	return frame(type, 0, txt, strlen(txt));
}

/* Read more bytes; while no host is connected the port reads EOF. */
static void fill(void)
{
	for (;;) {
		if (rlen == sizeof(rbuf))
			rlen = 0; /* nobody sends this much; start over */
		ssize_t n = read(port, rbuf + rlen, sizeof(rbuf) - rlen);
		if (n > 0) {
			rlen += (size_t)n;
			return;
		}
		msleep(20);
	}
}

/* The next whole frame's payload (NUL-terminated copy) and header. */
static char *next_frame(struct proto_hdr *h, bool resync)
{
	static char payload[PROTO_MAX_FS + 1];

	for (;;) {
		if (resync) {
			size_t off = proto_resync(rbuf, rlen);
			memmove(rbuf, rbuf + off, rlen - off);
			rlen -= off;
		}
		size_t flen;
		int st = proto_decode(rbuf, rlen, h, &flen);
		if (st == PROTO_OK) {
			memcpy(payload, rbuf + PROTO_HDR_LEN, h->len);
			payload[h->len] = '\0';
			memmove(rbuf, rbuf + flen, rlen - flen);
			rlen -= flen;
			return payload;
		}
		if (st != PROTO_NEED_MORE) {
			/* Drop a byte and look again. */
			memmove(rbuf, rbuf + 1, rlen - 1);
			rlen--;
			continue;
		}
		fill();
	}
}

/* The integer after "key": in a flat JSON text, or -1. */
static long long json_int(const char *txt, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(txt, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static void hello_answer(int proto, bool fs_notify)
{
	char txt[200];

	snprintf(txt, sizeof(txt),
		 "{\"proto\":%d,\"agent\":\"hostile-agent\",\"boot_id\":"
		 "\"hostile\",\"jobs\":[],\"fs_notify\":%s}",
		 proto, fs_notify ? "true" : "false");
	json_frame(PT_HELLO, txt);
}

/* Wait for tenkid's HELLO; returns the mode word from its hostname. */
static void wait_hello(char *mode, size_t len)
{
	struct proto_hdr h;
	char *p;

	do
		p = next_frame(&h, true);
	while (h.type != PT_HELLO);
	const char *hn = strstr(p, "\"hostname\":\"");
	snprintf(mode, len, "%s", hn ? hn + 12 : "none");
	mode[strcspn(mode, "-\"")] = '\0';
}

/* Read requests until an exec; returns its id and stdout channel. */
static long long wait_exec(long long *out_chan)
{
	struct proto_hdr h;

	for (;;) {
		char *p = next_frame(&h, false);
		if (h.type == PT_REQ && strstr(p, "\"op\":\"exec\"")) {
			*out_chan = json_int(p, "stdout");
			return json_int(p, "id");
		}
	}
}

static void answer_exec(long long id)
{
	char txt[100];

	snprintf(txt, sizeof(txt), "{\"id\":%lld,\"pid\":4242}", id);
	json_frame(PT_RESP, txt);
}

static void idle_forever(void)
{
	for (;;)
		pause();
}

static void mode_requests(bool with_id)
{
	struct proto_hdr h;
	char txt[100];
	long long fake = 1000000;

	for (;;) {
		char *p = next_frame(&h, false);
		if (h.type != PT_REQ)
			continue;
		if (with_id)
			snprintf(txt, sizeof(txt), "{\"id\":%lld}", fake++);
		else
			snprintf(txt, sizeof(txt), "{\"pid\":1}");
		(void)p;
		json_frame(PT_RESP, txt);
	}
}

static void mode_flood(bool gap)
{
	static uint8_t data[8 + 256 * 1024 - 8];
	long long chan;
	long long id = wait_exec(&chan);
	uint64_t off = gap ? (1ULL << 40) : 0;

	answer_exec(id);
	if (chan <= 0)
		idle_forever();
	memset(data + 8, 'F', sizeof(data) - 8);
	for (;;) {
		proto_put_u64(data, off);
		if (!frame(PT_DATA, (uint32_t)chan, data, sizeof(data)))
			msleep(100);
		off += sizeof(data) - 8;
	}
}

static void mode_chans(void)
{
	uint8_t data[8 + 16];

	memset(data, 'C', sizeof(data));
	proto_put_u64(data, 0);
	for (uint32_t c = 1000; c < 101000; c++)
		frame(PT_DATA, c, data, sizeof(data));
	idle_forever();
}

static void mode_exitspam(void)
{
	char txt[120];

	for (int i = 0; i < 100000; i++) {
		snprintf(txt, sizeof(txt),
			 "{\"event\":\"exit\",\"job\":\"nosuch%d\",\"pid\":%d,"
			 "\"exit_code\":0}",
			 i, i + 2);
		if (!json_frame(PT_EVENT, txt))
			break;
	}
	idle_forever();
}

static void mode_deepjson(void)
{
	static char txt[PROTO_MAX_JSON];
	size_t n = 30000;

	memset(txt, '[', n);
	memset(txt + n, ']', n);
	frame(PT_RESP, 0, txt, 2 * n);
	idle_forever();
}

/*
 * From the first exec on, FSNOTIFY frames as fast as the channel takes
 * them for about 20 s:
 * nodes and directories tenkid never heard of, long names, "lost
 * everything" again and again; then one malformed note (an ENTRY
 * without a name), which must end the connection.
 */
static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void mode_notifyflood(void)
{
	static uint8_t buf[60 * 1024];
	char name[255];
	uint64_t nid = 2;

	/* Start when asked for a job, so the test sees the flood live. */
	long long chan;
	answer_exec(wait_exec(&chan));
	memset(name, 'n', sizeof(name));
	for (int64_t end = now_ms() + 20000; now_ms() < end;) {
		struct proto_wr w = {.p = buf, .cap = sizeof(buf)};
		while (w.len + 4 + 8 + 2 + sizeof(name) <= sizeof(buf)) {
			uint32_t kind = 1 + (uint32_t)(nid % 3);
			proto_wr_u32(&w, kind);
			proto_wr_u64(&w, kind == FSN_ALL ? 0 : nid);
			proto_wr_str(&w, name,
				     kind == FSN_ENTRY ? 1 + nid % 255 : 0);
			nid++;
		}
		if (!frame(PT_FSNOTIFY, 0, buf, w.len))
			msleep(50);
	}
	struct proto_wr w = {.p = buf, .cap = sizeof(buf)};
	proto_wr_u32(&w, FSN_ENTRY);
	proto_wr_u64(&w, 7);
	proto_wr_str(&w, "", 0);
	frame(PT_FSNOTIFY, 0, buf, w.len);
	idle_forever();
}

int main(void)
{
	char mode[64];
	uint8_t junk[4096];

	port_open();
	wait_hello(mode, sizeof(mode));
	say("mode %s", mode);
	if (strcmp(mode, "nohello") == 0)
		idle_forever();
	hello_answer(strcmp(mode, "badproto") == 0 ? 99 : PROTO_VERSION,
		     strcmp(mode, "notifyflood") == 0);

	if (strcmp(mode, "garbage") == 0) {
		if (getrandom(junk, sizeof(junk), 0) > 0)
			put(junk, sizeof(junk));
	} else if (strcmp(mode, "oversize") == 0) {
		uint8_t hdr[PROTO_HDR_LEN];
		proto_encode_hdr(hdr, PT_RESP, 0, 0);
		proto_put_u32(hdr + 4, 0x7fffffffu);
		put(hdr, sizeof(hdr));
	} else if (strcmp(mode, "deepjson") == 0) {
		mode_deepjson();
	} else if (strcmp(mode, "noid") == 0) {
		mode_requests(false);
	} else if (strcmp(mode, "wrongid") == 0) {
		mode_requests(true);
	} else if (strcmp(mode, "gap") == 0) {
		mode_flood(true);
	} else if (strcmp(mode, "flood") == 0) {
		mode_flood(false);
	} else if (strcmp(mode, "chans") == 0) {
		mode_chans();
	} else if (strcmp(mode, "exitspam") == 0) {
		mode_exitspam();
	} else if (strcmp(mode, "pingflood") == 0) {
		for (;;)
			if (!frame(PT_PING, 0, "ping", 4))
				msleep(100);
	} else if (strcmp(mode, "notifyflood") == 0) {
		mode_notifyflood();
	} else if (strcmp(mode, "mute") == 0) {
		struct proto_hdr h;
		for (;;)
			next_frame(&h, false);
	}
	/* silent, and every mode once it has done its harm. */
	idle_forever();
}
