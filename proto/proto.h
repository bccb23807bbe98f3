/*
 * The tenki agent protocol: framing shared by tenkid and tenki-agent.
 *
 * docs/protocol.md is the normative description; this header is its
 * machine form.  Every multi-byte integer is little-endian.  Every frame
 * that arrives from the other side is untrusted input: the decoder checks
 * magic, type, flags and length before anything looks at the payload.
 */
#ifndef TENKI_PROTO_H
#define TENKI_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION	  1
#define PROTO_MAGIC	  0x314b4e54u /* "TNK1" as little-endian bytes */
#define PROTO_HDR_LEN	  16
#define PROTO_MAX_PAYLOAD (256u * 1024u)
#define PROTO_MAX_JSON	  (64u * 1024u) /* HELLO, REQ, RESP, EVENT */
#define PROTO_WINDOW	  (1024u * 1024u) /* unacknowledged bytes per data channel \
					   */
#define PROTO_MAX_CHANNEL 0x7fffffffu /* channel ids are 1..MAX; 0 is control  \
				       */

enum proto_type {
	PT_HELLO = 1,	  /* JSON, both ways, on channel 0 */
	PT_REQ = 2,	  /* JSON, host -> agent: {"id":N,"op":"..."} */
	PT_RESP = 3,	  /* JSON, agent -> host: {"id":N,...} */
	PT_EVENT = 4,	  /* JSON, agent -> host: {"event":"..."} */
	PT_DATA = 5,	  /* u64 stream offset, then bytes; channel > 0 */
	PT_ACK = 6,	  /* u64 offset consumed by the receiver; channel > 0 */
	PT_EOF = 7,	  /* u64 final stream offset; channel > 0 */
	PT_PING = 8,	  /* opaque payload, at most 64 bytes */
	PT_PONG = 9,	  /* echoes a PING's payload */
	PT_FSREQ = 10,	  /* binary file operation, host -> agent */
	PT_FSRESP = 11,	  /* its answer, agent -> host */
	PT_FSNOTIFY = 12, /* files changed in the guest, agent -> host */
	PT_MAX_TYPE = 12
};

/* File operations (docs/protocol.md, "File operations"). */
#define PROTO_MAX_FS	      (1024u * 1024u + 4096u)
#define PROTO_FS_IO_MAX	      (1024u * 1024u) /* READ/WRITE/READDIR bytes */
#define PROTO_FS_ATTR_LEN     84
#define PROTO_FS_ROOT	      1 /* nid of /home/tenki */
#define PROTO_FS_MAX_INFLIGHT 64

enum proto_fs_op {
	FS_LOOKUP = 1,
	FS_FORGET = 2,
	FS_GETATTR = 3,
	FS_SETATTR = 4,
	FS_READLINK = 5,
	FS_MKDIR = 6,
	FS_UNLINK = 7,
	FS_RMDIR = 8,
	FS_SYMLINK = 9,
	FS_RENAME = 10,
	FS_LINK = 11,
	FS_OPEN = 12,
	FS_CREATE = 13,
	FS_READ = 14,
	FS_WRITE = 15,
	FS_RELEASE = 16,
	FS_FSYNC = 17,
	FS_OPENDIR = 18,
	FS_READDIR = 19,
	FS_RELEASEDIR = 20,
	FS_STATFS = 21,
	FS_COPY_RANGE = 22,
	FS_READDIRPLUS = 23, /* agents that announce fs_notify */
	FS_MAX_OP = 23
};

/*
 * FSNOTIFY records (docs/protocol.md, "Change notifications"): u32 kind,
 * u64 nid, str name.  Only sent when the host's HELLO asked for them.
 */
enum proto_fs_note_kind {
	FSN_INODE = 1, /* nid's attributes or data changed; name empty */
	FSN_ENTRY = 2, /* name in directory nid appeared, went or changed */
	FSN_ALL = 3,   /* events were lost: forget everything; nid 0 */
};

#define PROTO_MAX_NOTIFY (64u * 1024u)

struct proto_fs_note {
	uint32_t kind;
	uint64_t nid;
	const uint8_t *name; /* into the payload, not NUL-terminated */
	uint16_t nlen;
};

/* SETATTR valid bits (FUSE's FATTR_* values) */
#define FS_SET_MODE	 1u
#define FS_SET_UID	 2u
#define FS_SET_GID	 4u
#define FS_SET_SIZE	 8u
#define FS_SET_ATIME	 16u
#define FS_SET_MTIME	 32u
#define FS_SET_ATIME_NOW 128u
#define FS_SET_MTIME_NOW 256u

/* A file's attributes as they travel (84 bytes, see the doc). */
struct proto_attr {
	uint64_t ino, size, blocks;
	int64_t atime, mtime, ctime;
	uint32_t atime_ns, mtime_ns, ctime_ns;
	uint32_t mode, nlink, uid, gid, rdev, blksize;
};

/*
 * A bounded reader and writer for FS payloads: every get checks the
 * remaining length and sets ->bad instead of reading past the end.
 */
struct proto_rd {
	const uint8_t *p;
	size_t left;
	int bad;
};

struct proto_wr {
	uint8_t *p;
	size_t len, cap;
	int bad;
};

uint64_t proto_rd_u64(struct proto_rd *r);
uint32_t proto_rd_u32(struct proto_rd *r);
uint16_t proto_rd_u16(struct proto_rd *r);
/* A str: returns a pointer into the payload (not NUL-terminated). */
const uint8_t *proto_rd_str(struct proto_rd *r, uint16_t *len);
void proto_rd_attr(struct proto_rd *r, struct proto_attr *a);

void proto_wr_u64(struct proto_wr *w, uint64_t v);
void proto_wr_u32(struct proto_wr *w, uint32_t v);
void proto_wr_str(struct proto_wr *w, const void *s, uint16_t len);
void proto_wr_bytes(struct proto_wr *w, const void *s, size_t len);
void proto_wr_attr(struct proto_wr *w, const struct proto_attr *a);

/*
 * The next record of an FSNOTIFY payload: 1, 0 at its end, or -1 for a
 * malformed one (an unknown kind, a name where none belongs, a bad name).
 */
int proto_fs_note_next(struct proto_rd *r, struct proto_fs_note *n);

struct proto_hdr {
	uint32_t len; /* payload bytes after the header */
	uint32_t chan;
	uint8_t type;
	uint8_t flags; /* must be 0 in version 1 */
};

enum proto_status {
	PROTO_OK = 0,
	PROTO_NEED_MORE = 1, /* not a whole frame yet: read more */
	PROTO_BAD_MAGIC = -1,
	PROTO_BAD_TYPE = -2,
	PROTO_BAD_LENGTH = -3,
	PROTO_BAD_CHANNEL = -4,
	PROTO_BAD_FLAGS = -5,
};

/*
 * Decode the frame at the start of buf.  On PROTO_OK, *hdr holds the header
 * and *frame_len the header plus payload length (the payload starts at
 * buf + PROTO_HDR_LEN).  Checks that the length fits the type's limit and
 * that the channel fits the type.  Never reads past buf + len.
 */
int proto_decode(const uint8_t *buf, size_t len, struct proto_hdr *hdr,
		 size_t *frame_len);

/* Write a header for a payload of plen bytes into out[PROTO_HDR_LEN]. */
void proto_encode_hdr(uint8_t *out, uint8_t type, uint32_t chan, uint32_t plen);

/*
 * Scan for the first offset in buf at which a frame header with a valid
 * magic could start; used only while waiting for a HELLO to skip bytes a
 * previous connection left behind.  Returns len when there is none.
 */
size_t proto_resync(const uint8_t *buf, size_t len);

const char *proto_status_str(int status);
const char *proto_type_str(uint8_t type);

static inline void proto_put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t proto_get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline void proto_put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t proto_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

#endif
