/* Capability drop after the mount.  See privs.h. */
#include "privs.h"
#include "log.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static const int keep[] = {
    CAP_SYS_ADMIN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
    CAP_FOWNER,	   CAP_CHOWN,	     CAP_NET_BIND_SERVICE,
};

static int kept(int cap)
{
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
		if (keep[i] == cap)
			return 1;
	return 0;
}

/* The highest capability this kernel knows. */
static int last_cap(void)
{
	int c = CAP_LAST_CAP;

	while (prctl(PR_CAPBSET_READ, c + 1, 0, 0, 0) >= 0)
		c++;
	return c;
}

int privs_drop(void)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	int top = last_cap();

	if (geteuid() != 0)
		return -1;
	/* The bounding set first: it needs CAP_SETPCAP, dropped below. */
	for (int c = 0; c <= top; c++)
		if (!kept(c) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 &&
		    errno != EINVAL) {
			log_warnx("cannot drop capability %d from the bounding "
				  "set: %s",
				  c, strerror(errno));
			return -1;
		}
	memset(data, 0, sizeof(data));
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		uint32_t bit = 1u << (keep[i] % 32);
		data[keep[i] / 32].effective |= bit;
		data[keep[i] / 32].permitted |= bit;
	}
	if (syscall(SYS_capset, &hdr, data) < 0) {
		log_warnx("capset: %s", strerror(errno));
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		log_warnx("no_new_privs: %s", strerror(errno));
		return -1;
	}
	log_debug("capabilities dropped; kept %zu",
		  sizeof(keep) / sizeof(keep[0]));
	return 0;
}
