/* Frame encoding and bounds-checked decoding for the agent protocol. */
#include "proto.h"

#include <string.h>

static uint32_t max_payload(uint8_t type)
{
	switch (type) {
	case PT_HELLO:
	case PT_REQ:
	case PT_RESP:
	case PT_EVENT:
		return PROTO_MAX_JSON;
	case PT_DATA:
		return PROTO_MAX_PAYLOAD;
	case PT_ACK:
	case PT_EOF:
		return 8;
	case PT_PING:
	case PT_PONG:
		return 64;
	case PT_FSREQ:
		return PROTO_MAX_FS;
	case PT_FSRESP:
		return PROTO_MAX_FS;
	case PT_FSNOTIFY:
		return PROTO_MAX_NOTIFY;
	default:
		return 0;
	}
}

static int min_payload(uint8_t type)
{
	switch (type) {
	case PT_HELLO:
	case PT_REQ:
	case PT_RESP:
	case PT_EVENT:
		return 2; /* "{}" */
	case PT_DATA:
	case PT_ACK:
	case PT_EOF:
		return 8;
	case PT_FSREQ:
		return 16;
	case PT_FSRESP:
		return 12;
	case PT_FSNOTIFY:
		return 14; /* one record */
	default:
		return 0;
	}
}

static int wants_data_channel(uint8_t type)
{
	return type == PT_DATA || type == PT_ACK || type == PT_EOF;
}

int proto_decode(const uint8_t *buf, size_t len, struct proto_hdr *hdr,
		 size_t *frame_len)
{
	if (len < PROTO_HDR_LEN)
		return PROTO_NEED_MORE;
	if (proto_get_u32(buf) != PROTO_MAGIC)
		return PROTO_BAD_MAGIC;
	hdr->len = proto_get_u32(buf + 4);
	hdr->chan = proto_get_u32(buf + 8);
	hdr->type = buf[12];
	hdr->flags = buf[13];
	if (hdr->type < PT_HELLO || hdr->type > PT_MAX_TYPE)
		return PROTO_BAD_TYPE;
	if (hdr->flags != 0 || buf[14] != 0 || buf[15] != 0)
		return PROTO_BAD_FLAGS;
	if (hdr->len > max_payload(hdr->type) ||
	    hdr->len < (uint32_t)min_payload(hdr->type))
		return PROTO_BAD_LENGTH;
	if (wants_data_channel(hdr->type)) {
		if (hdr->chan == 0 || hdr->chan > PROTO_MAX_CHANNEL)
			return PROTO_BAD_CHANNEL;
	} else if (hdr->chan != 0) {
		return PROTO_BAD_CHANNEL;
	}
	if (len - PROTO_HDR_LEN < hdr->len)
		return PROTO_NEED_MORE;
	*frame_len = PROTO_HDR_LEN + (size_t)hdr->len;
	return PROTO_OK;
}

void proto_encode_hdr(uint8_t *out, uint8_t type, uint32_t chan, uint32_t plen)
{
	proto_put_u32(out, PROTO_MAGIC);
	proto_put_u32(out + 4, plen);
	proto_put_u32(out + 8, chan);
	out[12] = type;
	out[13] = 0;
	out[14] = 0;
	out[15] = 0;
}

size_t proto_resync(const uint8_t *buf, size_t len)
{
	static const uint8_t magic[4] = {'T', 'N', 'K', '1'};

	for (size_t i = 0; i + 4 <= len; i++)
		if (memcmp(buf + i, magic, 4) == 0)
			return i;
	/* A magic may straddle the end: keep a possible prefix. */
	for (size_t keep = 3; keep > 0; keep--)
		if (len >= keep && memcmp(buf + len - keep, magic, keep) == 0)
			return len - keep;
	return len;
}

const char *proto_status_str(int status)
{
	switch (status) {
	case PROTO_OK:
		return "ok";
	case PROTO_NEED_MORE:
		return "incomplete frame";
	case PROTO_BAD_MAGIC:
		return "bad frame magic";
	case PROTO_BAD_TYPE:
		return "unknown frame type";
	case PROTO_BAD_LENGTH:
		return "frame length out of range";
	case PROTO_BAD_CHANNEL:
		return "channel not valid for frame type";
	case PROTO_BAD_FLAGS:
		return "reserved header bits set";
	}
	return "unknown status";
}

const char *proto_type_str(uint8_t type)
{
	static const char *names[] = {
	    "?",   "HELLO", "REQ",  "RESP",  "EVENT",  "DATA",	  "ACK",
	    "EOF", "PING",  "PONG", "FSREQ", "FSRESP", "FSNOTIFY"};

	return type <= PT_MAX_TYPE ? names[type] : "?";
}

/* ---- bounded payload reader and writer --------------------------------- */

static const uint8_t *rd_take(struct proto_rd *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->bad || r->left < n) {
		r->bad = 1;
		return NULL;
	}
	r->p += n;
	r->left -= n;
	return p;
}

uint64_t proto_rd_u64(struct proto_rd *r)
{
	const uint8_t *p = rd_take(r, 8);
	return p ? proto_get_u64(p) : 0;
}

uint32_t proto_rd_u32(struct proto_rd *r)
{
	const uint8_t *p = rd_take(r, 4);
	return p ? proto_get_u32(p) : 0;
}

uint16_t proto_rd_u16(struct proto_rd *r)
{
	const uint8_t *p = rd_take(r, 2);
	return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

const uint8_t *proto_rd_str(struct proto_rd *r, uint16_t *len)
{
	*len = proto_rd_u16(r);
	const uint8_t *p = rd_take(r, *len);
	if (!p)
		*len = 0;
	return p;
}

void proto_rd_attr(struct proto_rd *r, struct proto_attr *a)
{
	a->ino = proto_rd_u64(r);
	a->size = proto_rd_u64(r);
	a->blocks = proto_rd_u64(r);
	a->atime = (int64_t)proto_rd_u64(r);
	a->mtime = (int64_t)proto_rd_u64(r);
	a->ctime = (int64_t)proto_rd_u64(r);
	a->atime_ns = proto_rd_u32(r);
	a->mtime_ns = proto_rd_u32(r);
	a->ctime_ns = proto_rd_u32(r);
	a->mode = proto_rd_u32(r);
	a->nlink = proto_rd_u32(r);
	a->uid = proto_rd_u32(r);
	a->gid = proto_rd_u32(r);
	a->rdev = proto_rd_u32(r);
	a->blksize = proto_rd_u32(r);
}

static uint8_t *wr_take(struct proto_wr *w, size_t n)
{
	if (w->bad || w->cap - w->len < n) {
		w->bad = 1;
		return NULL;
	}
	uint8_t *p = w->p + w->len;
	w->len += n;
	return p;
}

void proto_wr_u64(struct proto_wr *w, uint64_t v)
{
	uint8_t *p = wr_take(w, 8);
	if (p)
		proto_put_u64(p, v);
}

void proto_wr_u32(struct proto_wr *w, uint32_t v)
{
	uint8_t *p = wr_take(w, 4);
	if (p)
		proto_put_u32(p, v);
}

void proto_wr_str(struct proto_wr *w, const void *s, uint16_t len)
{
	uint8_t *p = wr_take(w, 2);
	if (!p)
		return;
	p[0] = (uint8_t)len;
	p[1] = (uint8_t)(len >> 8);
	proto_wr_bytes(w, s, len);
}

void proto_wr_bytes(struct proto_wr *w, const void *s, size_t len)
{
	uint8_t *p = wr_take(w, len);
	if (p && len)
		memcpy(p, s, len);
}

void proto_wr_attr(struct proto_wr *w, const struct proto_attr *a)
{
	proto_wr_u64(w, a->ino);
	proto_wr_u64(w, a->size);
	proto_wr_u64(w, a->blocks);
	proto_wr_u64(w, (uint64_t)a->atime);
	proto_wr_u64(w, (uint64_t)a->mtime);
	proto_wr_u64(w, (uint64_t)a->ctime);
	proto_wr_u32(w, a->atime_ns);
	proto_wr_u32(w, a->mtime_ns);
	proto_wr_u32(w, a->ctime_ns);
	proto_wr_u32(w, a->mode);
	proto_wr_u32(w, a->nlink);
	proto_wr_u32(w, a->uid);
	proto_wr_u32(w, a->gid);
	proto_wr_u32(w, a->rdev);
	proto_wr_u32(w, a->blksize);
}

/* ---- FSNOTIFY records --------------------------------------------------- */

static int note_name_ok(const uint8_t *name, uint16_t n)
{
	if (n == 0 || n > 255 || memchr(name, '/', n) || memchr(name, 0, n))
		return 0;
	return !(n == 1 && name[0] == '.') &&
	       !(n == 2 && name[0] == '.' && name[1] == '.');
}

int proto_fs_note_next(struct proto_rd *r, struct proto_fs_note *n)
{
	if (r->left == 0 && !r->bad)
		return 0;
	n->kind = proto_rd_u32(r);
	n->nid = proto_rd_u64(r);
	n->name = proto_rd_str(r, &n->nlen);
	if (r->bad)
		return -1;
	switch (n->kind) {
	case FSN_INODE:
		return n->nid != 0 && n->nlen == 0 ? 1 : -1;
	case FSN_ENTRY:
		return n->nid != 0 && note_name_ok(n->name, n->nlen) ? 1 : -1;
	case FSN_ALL:
		return n->nid == 0 && n->nlen == 0 ? 1 : -1;
	default:
		return -1;
	}
}
