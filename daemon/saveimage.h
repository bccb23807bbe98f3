/*
 * saveimage: copies of a libvirt qemu save image (virsh save, or the
 * memory file of an external snapshot) with the domain XML in its header
 * replaced.  libvirt refuses to restore an image under another name or
 * UUID than the one it was saved with, so every restored copy of one
 * saved guest gets its own image whose header names the new domain.
 *
 * The layout (libvirt's qemu_saveimage.h, native byte order):
 *   char magic[16]  "LibvirtQemudSave"
 *   u32 version     2
 *   u32 data_len    bytes of data after the 92-byte header
 *   u32 was_running, format (0: raw), cookieOffset (0: no cookie)
 *   u32 unused[14]
 * then data: the XML (NUL-terminated), from cookieOffset the cookie
 * (NUL-terminated), zero padding up to data_len; then qemu's migration
 * stream, which is copied unchanged.
 *
 * Pure file work, no libvirt: the vmm backend uses it before a restore.
 */
#ifndef TENKI_SAVEIMAGE_H
#define TENKI_SAVEIMAGE_H

#include <stddef.h>
#include <stdint.h>

#define SAVEIMAGE_HDR_LEN  92
#define SAVEIMAGE_DATA_MAX (16u * 1024 * 1024)

/* Make the new XML from the old one: malloc'd, or NULL with err. */
typedef char *(*saveimage_rewrite_fn)(const char *xml, void *arg, char *err);

/*
 * Check a header and its data (hdr + data_len bytes at buf, len in all).
 * On success returns 0 and points *xml at the XML inside buf (bounded by
 * its NUL), else -1 with err.  Used on whole files and by the fuzzer.
 */
int saveimage_parse(const uint8_t *buf, size_t len, const char **xml,
		    size_t *data_len, char *err);

/*
 * Build the header and data of a copy whose XML is newxml, keeping
 * data_len (and so the offset of the migration stream): the XML and the
 * cookie are laid out again inside the same space.  out must hold
 * SAVEIMAGE_HDR_LEN + data_len bytes.  -1 with err if it does not fit.
 */
int saveimage_relayout(const uint8_t *old, size_t data_len, const char *newxml,
		       uint8_t *out, char *err);

/* Copy src to dst (created 0600, must not exist) with the XML rewritten
 * by fn; the migration stream goes by copy_file_range. */
int saveimage_copy(const char *src, const char *dst, saveimage_rewrite_fn fn,
		   void *arg, char *err);

/* The header and data of src with the XML rewritten by fn (the first
 * *len bytes of a copy, the rest being src's from there): malloc'd in
 * *out.  For a copy made elsewhere (another host's pool). */
int saveimage_head(const char *src, saveimage_rewrite_fn fn, void *arg,
		   uint8_t **out, size_t *len, char *err);

#endif
