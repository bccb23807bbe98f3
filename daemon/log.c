/* Logging to stderr (foreground) or syslog. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static int log_foreground = 1;
static int log_debug_on;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_init(int foreground, int debug)
{
	log_foreground = foreground;
	log_debug_on = debug;
	if (!foreground)
		openlog("tenkid", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

static void log_vline(int prio, const char *func, const char *fmt, va_list ap,
		      const char *suffix)
{
	char msg[2048];

	if (prio == LOG_DEBUG && !log_debug_on)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (!log_foreground) {
		syslog(prio, "%s: %s%s", func, msg, suffix);
		return;
	}
	struct timespec ts;
	struct tm tm;
	char when[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%s.%03ld tenkid %s: %s%s\n", when,
		ts.tv_nsec / 1000000, func, msg, suffix);
	pthread_mutex_unlock(&log_lock);
}

void log_msg(int prio, const char *func, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline(prio, func, fmt, ap, "");
	va_end(ap);
}

void log_fatal(int with_errno, const char *func, const char *fmt, ...)
{
	char suffix[256] = "";
	va_list ap;

	if (with_errno)
		snprintf(suffix, sizeof(suffix), ": %s", strerror(errno));
	va_start(ap, fmt);
	log_vline(LOG_CRIT, func, fmt, ap, suffix);
	va_end(ap);
	exit(1);
}
