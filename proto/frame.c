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
	static const char *names[] = {"?",    "HELLO", "REQ", "RESP", "EVENT",
				      "DATA", "ACK",   "EOF", "PING", "PONG"};

	return type <= PT_MAX_TYPE ? names[type] : "?";
}
