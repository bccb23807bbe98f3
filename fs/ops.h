/* The FUSE operations table (ops.c), for fs.c. */
#ifndef TENKI_OPS_H
#define TENKI_OPS_H

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

extern const struct fuse_lowlevel_ops tenki_ops;
/* Files appear owned by the user who mounted the tree. */
void ops_set_owner(uid_t uid, gid_t gid);

#endif
