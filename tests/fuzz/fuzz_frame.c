/* libFuzzer target: the frame decoder over an arbitrary byte stream, the
 * way the host reads a guest's channel (resync before HELLO, then strict
 * decoding).  Every accepted frame must lie inside the input. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = proto_resync(data, size);

	assert(off <= size);
	while (off < size) {
		struct proto_hdr h;
		size_t flen;
		int st = proto_decode(data + off, size - off, &h, &flen);
		if (st != PROTO_OK)
			break;
		assert(flen >= PROTO_HDR_LEN && flen <= size - off);
		assert(h.len == flen - PROTO_HDR_LEN);
		assert(h.type >= PT_HELLO && h.type <= PT_MAX_TYPE);
		if (h.type == PT_DATA)
			assert(h.len >= 8 && h.chan > 0);
		off += flen;
	}
	return 0;
}
