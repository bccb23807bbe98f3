/* Path <-> inode table, with its own lock (forget needs no model lock). */
#include "inodes.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ientry {
	struct ientry *next;
	uint64_t ino, nlookup;
	char path[];
};

#define NBUCKETS 4096

static struct ientry *buckets[NBUCKETS];
static pthread_mutex_t ino_lock = PTHREAD_MUTEX_INITIALIZER;

uint64_t ino_of(const char *path)
{
	uint64_t h = 1469598103934665603ULL;

	if (*path == '\0')
		return INO_ROOT;
	for (const char *p = path; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	/* Keep clear of the root's number, of 0, and of the bit that marks
	 * the guest's inodes under files/ (gfs.h). */
	h &= ~(1ULL << 63);
	return h < 2 ? h + 2 : h;
}

static struct ientry **slot(uint64_t ino)
{
	return &buckets[ino % NBUCKETS];
}

uint64_t ino_ref(const char *path)
{
	uint64_t ino = ino_of(path);
	struct ientry *e;

	if (ino == INO_ROOT)
		return ino;
	pthread_mutex_lock(&ino_lock);
	for (e = *slot(ino); e; e = e->next)
		if (e->ino == ino)
			break;
	if (!e) {
		e = malloc(sizeof(*e) + strlen(path) + 1);
		if (!e)
			abort();
		e->ino = ino;
		e->nlookup = 0;
		strcpy(e->path, path);
		e->next = *slot(ino);
		*slot(ino) = e;
	}
	e->nlookup++;
	pthread_mutex_unlock(&ino_lock);
	return ino;
}

void ino_forget(uint64_t ino, uint64_t n)
{
	pthread_mutex_lock(&ino_lock);
	for (struct ientry **pp = slot(ino); *pp; pp = &(*pp)->next) {
		struct ientry *e = *pp;
		if (e->ino != ino)
			continue;
		e->nlookup = e->nlookup > n ? e->nlookup - n : 0;
		if (e->nlookup == 0) {
			*pp = e->next;
			free(e);
		}
		break;
	}
	pthread_mutex_unlock(&ino_lock);
}

int ino_path(uint64_t ino, char *out, size_t cap)
{
	int rc = -1;

	if (ino == INO_ROOT) {
		out[0] = '\0';
		return 0;
	}
	pthread_mutex_lock(&ino_lock);
	for (struct ientry *e = *slot(ino); e; e = e->next) {
		if (e->ino == ino) {
			if (strlen(e->path) < cap) {
				strcpy(out, e->path);
				rc = 0;
			}
			break;
		}
	}
	pthread_mutex_unlock(&ino_lock);
	return rc;
}
