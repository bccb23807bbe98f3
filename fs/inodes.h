/*
 * Inode numbers of the tree.  A node's number is a hash of its path, so
 * readdir and lookup agree without a table lookup; the table maps numbers
 * the kernel holds (lookup counts) back to paths.
 */
#ifndef TENKI_INODES_H
#define TENKI_INODES_H

#include <stddef.h>
#include <stdint.h>

#define INO_ROOT 1

uint64_t ino_of(const char *path);
/* Record one more kernel reference to path; returns its inode number. */
uint64_t ino_ref(const char *path);
/* Drop n references; the entry goes at zero. */
void ino_forget(uint64_t ino, uint64_t n);
/* The path of ino, copied into out; -1 when unknown. */
int ino_path(uint64_t ino, char *out, size_t cap);

#endif
