/* What tenkid keeps of root's privileges once the tree is mounted. */
#ifndef TENKI_PRIVS_H
#define TENKI_PRIVS_H

/*
 * Drop every capability tenkid does not use (from the effective,
 * permitted, inheritable and bounding sets) and set no_new_privs, so
 * neither tenkid nor anything it could be made to run regains them.
 * Kept: SYS_ADMIN (unmounting the tree at exit), DAC_OVERRIDE,
 * DAC_READ_SEARCH, FOWNER and CHOWN (state files libvirt relabels to its
 * qemu user), NET_BIND_SERVICE (--ssh or --port-bind on a low port).
 * Returns 0, or -1 when not root (nothing to drop) or the kernel refused;
 * errors are logged, never fatal.
 */
int privs_drop(void);

#endif
