/* Small helpers of the agent: logging, time, byte queues, base64. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int log_verbose;

/*
 * As PID 1 stderr is the console (a slow serial line under TCG), so the
 * agent logs only what an operator needs: state changes and errors.
 */
void alog(int level, const char *fmt, ...)
{
	static const char *tag[] = {"error: ", "warning: ", "", "debug: "};
	char line[1024];
	va_list ap;
	int n;

	if (level == L_DEBUG && !log_verbose)
		return;
	n = snprintf(line, sizeof(line), "tenki-agent: %s", tag[level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(line);
	line[n++] = '\n';
	/* One write, so lines from the agent never interleave mid-line. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The earlier of two deadlines, where 0 means "not armed". */
int64_t deadline_min(int64_t a, int64_t b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return a < b ? a : b;
}

int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return 0;
}

/* Make room for n more bytes at the tail, moving or growing as needed. */
int buf_reserve(struct buf *b, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (buf_tailroom(b) >= n)
		return 0;
	if (b->head > 0 && b->cap - b->len >= n) {
		memmove(b->data, b->data + b->head, b->len);
		b->head = 0;
		return 0;
	}
	if (b->len + n < b->len)
		return -1;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + n)
		cap *= 2;
	if (b->head > 0) {
		memmove(b->data, b->data + b->head, b->len);
		b->head = 0;
	}
	p = realloc(b->data, cap);
	if (p == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (buf_reserve(b, n) < 0)
		return -1;
	memcpy(buf_tail(b), p, n);
	b->len += n;
	return 0;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->head = 0;
		b->len = 0;
		return;
	}
	b->head += n;
	b->len -= n;
}

void buf_free(struct buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Standard base64 with optional '=' padding.  Returns the decoded length,
 * or -1 on a bad character or when the output would exceed outcap.
 */
ssize_t base64_decode(const char *in, size_t inlen, uint8_t *out, size_t outcap)
{
	uint32_t acc = 0;
	size_t o = 0, i;
	int bits = 0, v;

	while (inlen > 0 && in[inlen - 1] == '=')
		inlen--;
	for (i = 0; i < inlen; i++) {
		v = b64_value(in[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outcap)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	if (bits >= 6) /* one stray character: not valid base64 */
		return -1;
	return (ssize_t)o;
}
