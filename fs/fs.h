/* The FUSE side of tenkid: mounts the tree and serves it. */
#ifndef TENKI_FS_H
#define TENKI_FS_H

#include <stdbool.h>

/* Mount at mountpoint and serve from a pool of threads. */
int fs_start(const char *mountpoint, bool allow_other);
/* Ask the loop to end (async-signal-safe). */
void fs_exit(void);
/* Wait for the loop to end, then unmount. */
void fs_wait_and_unmount(void);

#endif
