/* Wait queues: parked FUSE requests and poll handles, woken on change. */
#include "model.h"

void waitq_init(struct waitq *q)
{
	q->head.prev = q->head.next = &q->head;
}

void waitq_add(struct waitq *q, struct waiter *w)
{
	w->prev = q->head.prev;
	w->next = &q->head;
	q->head.prev->next = w;
	q->head.prev = w;
}

void waitq_del(struct waiter *w)
{
	if (!w->next)
		return;
	w->prev->next = w->next;
	w->next->prev = w->prev;
	w->prev = w->next = NULL;
}

/* A wake callback may remove itself (or be re-added at the tail): detach
 * the whole list first so each waiter is woken at most once per call. */
void waitq_wake(struct waitq *q)
{
	struct waitq batch;

	if (q->head.next == &q->head)
		return;
	batch.head.next = q->head.next;
	batch.head.prev = q->head.prev;
	batch.head.next->prev = &batch.head;
	batch.head.prev->next = &batch.head;
	waitq_init(q);
	while (batch.head.next != &batch.head) {
		struct waiter *w = batch.head.next;
		waitq_del(w);
		waitq_add(q, w); /* stays parked unless wake removes it */
		w->wake(w);
	}
}
