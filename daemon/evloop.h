/*
 * The event loop thread: agent connections and timers.  Every callback
 * runs with model_lock held.
 */
#ifndef TENKI_EVLOOP_H
#define TENKI_EVLOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef void (*ev_fd_cb)(int fd, uint32_t events, void *arg);

struct timer {
	struct timer *next;
	int64_t when_ms; /* CLOCK_MONOTONIC milliseconds */
	void (*cb)(struct timer *t);
	bool armed;
};

int evloop_init(void);
/* Runs the loop in its own thread. */
int evloop_start(void);
void evloop_stop(void);

int evloop_add(int fd, uint32_t events, ev_fd_cb cb, void *arg);
int evloop_mod(int fd, uint32_t events, ev_fd_cb cb, void *arg);
void evloop_del(int fd);

int64_t mono_ms(void);
/* Arm (or re-arm) t to fire in delay_ms; model_lock held. */
void timer_arm(struct timer *t, int64_t delay_ms);
void timer_cancel(struct timer *t);

#endif
