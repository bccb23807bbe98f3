/*
 * The state directory is the single source of truth: every record is a
 * JSON file replaced atomically (temp file, fsync, rename).
 *
 *   STATE/defaults                 the defaults file
 *   STATE/err, STATE/sessions.err  root and collection err files
 *   STATE/sessions/ID/session.json one session's record
 *   STATE/sessions/ID/err          its err file
 *   STATE/sessions/ID/disk.qcow2   its disk overlay
 *   STATE/sessions/ID/console.log  its serial console
 *   STATE/sessions/ID/jobs/NAME/   job.json, stdout, stderr, output, offsets
 *   STATE/volumes/ID/volume.json   one volume's record (volume.c), and err
 *   STATE/volume-pool/ID.raw       its data: the libvirt pool's directory
 *   STATE/hosts/NAME/host.json     one host of hosts/ (host.c), and err
 */
#ifndef TENKI_PERSIST_H
#define TENKI_PERSIST_H

#include "model.h"

char *persist_load_defaults(void);
int persist_save_defaults(const char *text);
/* Every session record found, as a list linked by ->next, each with one
 * reference.  Unreadable records are logged and skipped. */
struct session *persist_load_sessions(void);

#endif
