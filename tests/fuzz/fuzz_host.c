/* Fuzz target: the preview listener's Host header routing. */
#include "hostroute.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[NAME_MAX_LEN + 1];
	int port = 0;
	/* An exact-size copy so ASan sees any read past the end. */
	char *buf = malloc(size ? size : 1);

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (hostroute_parse(buf, size, &port, name) == HR_OK) {
		if (port < 1 || port > 65535 || !valid_name(name))
			abort();
	}
	if (hostroute_host(buf, size, &port, name) == 0 &&
	    (port < 1 || port > 65535 || !valid_name(name)))
		abort();
	free(buf);
	return 0;
}
