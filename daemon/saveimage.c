/* Copies of qemu save images with a new domain XML; see saveimage.h. */
#include "saveimage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"
#include "vmm.h"

#define MAGIC	   "LibvirtQemudSave"
#define MAGIC_LEN  16
#define OFF_VER	   16
#define OFF_LEN	   20
#define OFF_COOKIE 32

/* The header's integers are in the byte order of the host that saved
 * it, which is this one; a copy restored on another host needs one of
 * the same order (tenki's hosts are all x86_64). */
static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

int saveimage_parse(const uint8_t *buf, size_t len, const char **xml,
		    size_t *data_len, char *err)
{
	uint32_t dl, cookie;
	const uint8_t *data;

	if (len < SAVEIMAGE_HDR_LEN || memcmp(buf, MAGIC, MAGIC_LEN) != 0) {
		vmm_seterr(err, "not a libvirt qemu save image");
		return -1;
	}
	if (get_u32(buf + OFF_VER) != 2) {
		vmm_seterr(err, "save image version %u, not 2",
			   get_u32(buf + OFF_VER));
		return -1;
	}
	dl = get_u32(buf + OFF_LEN);
	cookie = get_u32(buf + OFF_COOKIE);
	if (dl == 0 || dl > SAVEIMAGE_DATA_MAX ||
	    len - SAVEIMAGE_HDR_LEN < dl) {
		vmm_seterr(err, "save image data length %u out of range", dl);
		return -1;
	}
	if (cookie >= dl) {
		vmm_seterr(err, "save image cookie offset %u beyond its data",
			   cookie);
		return -1;
	}
	data = buf + SAVEIMAGE_HDR_LEN;
	/* The XML ends at its NUL, before the cookie when there is one;
	 * the cookie ends at its own NUL before data_len. */
	if (memchr(data, '\0', cookie ? cookie : dl) == NULL ||
	    (cookie && memchr(data + cookie, '\0', dl - cookie) == NULL)) {
		vmm_seterr(err, "save image XML or cookie not terminated");
		return -1;
	}
	*xml = (const char *)data;
	*data_len = dl;
	return 0;
}

int saveimage_relayout(const uint8_t *old, size_t data_len, const char *newxml,
		       uint8_t *out, char *err)
{
	uint32_t cookie = get_u32(old + OFF_COOKIE);
	const char *ck =
	    cookie ? (const char *)old + SAVEIMAGE_HDR_LEN + cookie : NULL;
	size_t xl = strlen(newxml) + 1, cl = ck ? strlen(ck) + 1 : 0;
	uint8_t *data = out + SAVEIMAGE_HDR_LEN;

	if (xl + cl > data_len) {
		vmm_seterr(
		    err,
		    "the new domain XML (%zu bytes) does not fit the save "
		    "image's %zu",
		    xl, data_len - cl);
		return -1;
	}
	memcpy(out, old, SAVEIMAGE_HDR_LEN);
	memset(data, 0, data_len);
	memcpy(data, newxml, xl);
	if (ck) {
		/* Keep the cookie where it was if the XML still ends before
		 * it (libvirt's own layout), else right after the XML. */
		size_t at = xl <= cookie ? cookie : xl;
		memcpy(data + at, ck, cl);
		put_u32(out + OFF_COOKIE, (uint32_t)at);
	}
	return 0;
}

/* Read src's header and data, rewrite its XML: the new head in *out
 * (*total bytes), the open file in *in (its size in st). */
static int read_rewritten(const char *src, saveimage_rewrite_fn fn, void *arg,
			  int *in, struct stat *st, uint8_t **out,
			  size_t *total, char *err)
{
	uint8_t first[SAVEIMAGE_HDR_LEN], *buf = NULL;
	const char *xml;
	char *newxml = NULL;
	size_t dl;
	int rc = -1;

	*out = NULL;
	if ((*in = open(src, O_RDONLY | O_CLOEXEC)) < 0 || fstat(*in, st) < 0) {
		vmm_seterr(err, "%s: %s", src, strerror(errno));
		goto out;
	}
	if (pread(*in, first, sizeof(first), 0) != (ssize_t)sizeof(first)) {
		vmm_seterr(err, "%s: short save image", src);
		goto out;
	}
	dl = get_u32(first + OFF_LEN);
	if (dl == 0 || dl > SAVEIMAGE_DATA_MAX) {
		vmm_seterr(err, "%s: save image data length %zu out of range",
			   src, dl);
		goto out;
	}
	*total = SAVEIMAGE_HDR_LEN + dl;
	if ((off_t)*total > st->st_size || !(buf = malloc(*total)) ||
	    !(*out = malloc(*total)) ||
	    pread(*in, buf, *total, 0) != (ssize_t)*total) {
		vmm_seterr(err, "%s: cannot read its header", src);
		goto out;
	}
	if (saveimage_parse(buf, *total, &xml, &dl, err) < 0 ||
	    !(newxml = fn(xml, arg, err)) ||
	    saveimage_relayout(buf, dl, newxml, *out, err) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0) {
		free(*out);
		*out = NULL;
		if (*in >= 0)
			close(*in);
		*in = -1;
	}
	free(newxml);
	free(buf);
	return rc;
}

int saveimage_head(const char *src, saveimage_rewrite_fn fn, void *arg,
		   uint8_t **out, size_t *len, char *err)
{
	struct stat st;
	int in;

	if (read_rewritten(src, fn, arg, &in, &st, out, len, err) < 0)
		return -1;
	close(in);
	return 0;
}

int saveimage_copy(const char *src, const char *dst, saveimage_rewrite_fn fn,
		   void *arg, char *err)
{
	uint8_t *out = NULL;
	int in = -1, fd = -1, rc = -1;
	size_t total;
	struct stat st;

	if (read_rewritten(src, fn, arg, &in, &st, &out, &total, err) < 0)
		return -1;
	fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		vmm_seterr(err, "%s: %s", dst, strerror(errno));
		goto out;
	}
	if (pwrite(fd, out, total, 0) != (ssize_t)total) {
		vmm_seterr(err, "%s: %s", dst, strerror(errno));
		goto out;
	}
	if (copy_file_part(in, fd, (off_t)total, st.st_size) < 0) {
		vmm_seterr(err, "copying the save image: %s",
			   errno ? strerror(errno) : "short file");
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0) {
		close(fd);
		if (rc < 0)
			unlink(dst);
	}
	close(in);
	free(out);
	return rc;
}
