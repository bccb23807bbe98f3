/* Logging for tenkid, in the manner of OpenBSD daemons: every line names the
 * function it comes from; fatal() ends the process. */
#ifndef TENKI_LOG_H
#define TENKI_LOG_H

#include <stdnoreturn.h>

void log_init(int foreground, int debug);
void log_msg(int prio, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
noreturn void log_fatal(int with_errno, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(...) log_msg(7, __func__, __VA_ARGS__)
#define log_info(...)  log_msg(6, __func__, __VA_ARGS__)
#define log_warnx(...) log_msg(4, __func__, __VA_ARGS__)
/* fatal: with strerror(errno) appended; fatalx: without. */
#define fatal(...)  log_fatal(1, __func__, __VA_ARGS__)
#define fatalx(...) log_fatal(0, __func__, __VA_ARGS__)

#endif
