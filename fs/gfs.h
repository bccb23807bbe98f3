/*
 * files/: the guest's /home/tenki as a mounted filesystem.  Each FUSE
 * operation under files/ becomes one agent file operation (FSREQ); the
 * answer replies to the kernel from the event loop, so requests pipeline.
 */
#ifndef TENKI_GFS_H
#define TENKI_GFS_H

#include "ops.h"

#include <stdbool.h>

struct session;

/* Inode numbers of guest nodes have this bit; the tree's never do. */
#define GFS_INO_BIT (1ULL << 63)

static inline int gfs_owns(fuse_ino_t ino)
{
	return (ino & GFS_INO_BIT) != 0;
}

/* lookup of sessions/NAME/files (model_lock NOT held; replies); takes
 * over the caller's reference to s. */
void gfs_lookup_root(fuse_req_t req, struct session *s);

void gfs_init(struct fuse_conn_info *conn);

/* Start and stop the thread that applies the guest's change notifications
 * to the kernel's caches (after mounting; before destroying se).
 * gfs_stop returns false when the thread would not end: se must stay. */
void gfs_start(struct fuse_session *se);
bool gfs_stop(void);

/* The operations, for inodes gfs_owns (model_lock NOT held). */
extern const struct fuse_lowlevel_ops gfs_ops;

#endif
