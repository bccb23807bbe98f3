/* epoll loop with a sorted timer list; callbacks run under model_lock. */
#include "evloop.h"
#include "log.h"
#include "model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct ev_slot {
	ev_fd_cb cb;
	void *arg;
	uint64_t gen;
};

static int epfd = -1, wakefd = -1;
static pthread_t loop_thread;
static volatile bool loop_stop;
static struct timer *timers; /* sorted by when_ms */
/* Slots are indexed by fd; a generation guards against an fd closed and
 * reused while its events are still in the batch being dispatched. */
static struct ev_slot *slots;
static int nslots;
static uint64_t slot_gen;

int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake_loop(void)
{
	uint64_t one = 1;

	if (wakefd >= 0 && write(wakefd, &one, sizeof(one)) < 0 &&
	    errno != EAGAIN)
		log_warnx("eventfd: %s", strerror(errno));
}

int evloop_init(void)
{
	epfd = epoll_create1(EPOLL_CLOEXEC);
	wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (epfd < 0 || wakefd < 0)
		return -1;
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
	return epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev);
}

static int slot_set(int fd, ev_fd_cb cb, void *arg)
{
	if (fd >= nslots) {
		int n = nslots ? nslots : 64;
		while (n <= fd)
			n *= 2;
		struct ev_slot *ns = realloc(slots, (size_t)n * sizeof(*ns));
		if (!ns)
			return -1;
		memset(ns + nslots, 0, (size_t)(n - nslots) * sizeof(*ns));
		slots = ns;
		nslots = n;
	}
	slots[fd].cb = cb;
	slots[fd].arg = arg;
	slots[fd].gen = ++slot_gen;
	return 0;
}

static uint64_t ev_data(int fd)
{
	return (slots[fd].gen << 20) | (uint64_t)fd;
}

int evloop_add(int fd, uint32_t events, ev_fd_cb cb, void *arg)
{
	if (fd < 0 || fd >= (1 << 20) || slot_set(fd, cb, arg) < 0)
		return -1;
	struct epoll_event ev = {.events = events, .data.u64 = ev_data(fd)};
	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int evloop_mod(int fd, uint32_t events, ev_fd_cb cb, void *arg)
{
	if (fd < 0 || fd >= nslots)
		return -1;
	slots[fd].cb = cb;
	slots[fd].arg = arg;
	struct epoll_event ev = {.events = events, .data.u64 = ev_data(fd)};
	return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

void evloop_del(int fd)
{
	if (fd < 0 || fd >= nslots)
		return;
	epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
	slots[fd].cb = NULL;
	slots[fd].gen = ++slot_gen;
}

void timer_cancel(struct timer *t)
{
	for (struct timer **pp = &timers; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	t->armed = false;
	t->next = NULL;
}

void timer_arm(struct timer *t, int64_t delay_ms)
{
	struct timer **pp;

	if (t->armed)
		timer_cancel(t);
	t->when_ms = mono_ms() + (delay_ms < 0 ? 0 : delay_ms);
	for (pp = &timers; *pp && (*pp)->when_ms <= t->when_ms;
	     pp = &(*pp)->next)
		;
	t->next = *pp;
	*pp = t;
	t->armed = true;
	if (timers == t && !pthread_equal(pthread_self(), loop_thread))
		wake_loop();
}

static int next_timeout(void)
{
	if (!timers)
		return 1000;
	int64_t d = timers->when_ms - mono_ms();
	if (d < 0)
		return 0;
	return d > 1000 ? 1000 : (int)d;
}

static void run_timers(void)
{
	int64_t now = mono_ms();

	while (timers && timers->when_ms <= now) {
		struct timer *t = timers;
		timers = t->next;
		t->next = NULL;
		t->armed = false;
		t->cb(t);
	}
}

static void dispatch(struct epoll_event *e)
{
	if (e->data.u64 == UINT64_MAX) {
		uint64_t v;
		if (read(wakefd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			log_warnx("eventfd: %s", strerror(errno));
		return;
	}
	int fd = (int)(e->data.u64 & 0xfffff);
	uint64_t gen = e->data.u64 >> 20;
	if (fd >= nslots || !slots[fd].cb ||
	    (slots[fd].gen & ((1ULL << 44) - 1)) != gen)
		return;
	slots[fd].cb(fd, e->events, slots[fd].arg);
}

static void *loop_main(void *arg)
{
	struct epoll_event evs[64];

	while (!loop_stop) {
		int n = epoll_wait(epfd, evs, 64, next_timeout());
		if (n < 0 && errno != EINTR)
			fatal("epoll_wait");
		pthread_mutex_lock(&model_lock);
		for (int i = 0; i < n; i++)
			dispatch(&evs[i]);
		run_timers();
		pthread_mutex_unlock(&model_lock);
	}
	return NULL;
}

int evloop_start(void)
{
	return pthread_create(&loop_thread, NULL, loop_main, NULL);
}

void evloop_stop(void)
{
	loop_stop = true;
	wake_loop();
	pthread_join(loop_thread, NULL);
}
