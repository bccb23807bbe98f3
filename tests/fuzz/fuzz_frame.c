/* libFuzzer target: the frame decoder over an arbitrary byte stream, the
 * way the host reads a guest's channel (resync before HELLO, then strict
 * decoding).  Every accepted frame must lie inside the input. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto.h"

/* FSNOTIFY records as tenkid reads them: every accepted one is whole,
 * inside the payload, and well-formed for its kind. */
static void check_notes(const uint8_t *p, size_t len)
{
	struct proto_rd r = {p, len, 0};
	struct proto_fs_note n;
	int rc;

	while ((rc = proto_fs_note_next(&r, &n)) > 0) {
		assert(n.kind >= FSN_INODE && n.kind <= FSN_ALL);
		assert(n.nlen <= 255);
		assert(n.nlen == 0 ||
		       (n.name >= p && n.name + n.nlen <= p + len));
		assert((n.kind == FSN_ENTRY) == (n.nlen > 0));
		assert(!memchr(n.name, '/', n.nlen));
	}
	assert(rc == 0 || rc == -1);
}

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
		if (h.type == PT_FSNOTIFY)
			check_notes(data + off + PROTO_HDR_LEN, h.len);
		off += flen;
	}
	return 0;
}
