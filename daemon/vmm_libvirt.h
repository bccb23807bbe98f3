/*
 * Between the files of the libvirt backend of vmm.h (vmm_libvirt.c,
 * vmm_channel.c); nothing outside the backend includes this.
 */
#ifndef TENKI_VMM_LIBVIRT_H
#define TENKI_VMM_LIBVIRT_H

#include <libvirt/libvirt.h>

#include "vmm.h"

/* A reference to the host's live connection (reopened if it died);
 * release it with virConnectClose.  NULL with err. */
virConnectPtr vmm_libvirt_conn(struct vmm_host *host, char *err);

/* err is "what: libvirt's last error", on one line. */
void vmm_libvirt_err(char *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
