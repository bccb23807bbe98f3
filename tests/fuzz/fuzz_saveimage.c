/* libFuzzer target: qemu save image headers (saveimage_parse, then a
 * relayout of whatever parsed) and the rewrite of the XML they carry,
 * with stand-ins for volumes and another host's kernel, and the list of
 * a domain's volume disks. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "domxml.h"
#include "saveimage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmm_vm_spec v = {
	    .domname = "tenki-00000000-aaaaaaaaaaaa",
	    .uuid = "11111111-2222-3333-4444-aaaaaaaaaaaa",
	    .disk = "/s/disk.qcow2",
	    .console = "/s/console.log",
	    .kernel = "/pool/vmlinux",
	    .initrd = "/pool/initrd.img",
	    .stand_in_dir = "/s",
	};
	struct domxml_disk_ref refs[VMM_MAX_DISKS];
	char err[VMM_ERRLEN];
	const char *xml;
	size_t dl;

	if (saveimage_parse(data, size, &xml, &dl, err) == 0) {
		uint8_t *out = malloc(SAVEIMAGE_HDR_LEN + dl);
		char *nx = domxml_saved_rewrite(xml, &v, err);
		if (out && nx)
			saveimage_relayout(data, dl, nx, out, err);
		free(nx);
		free(out);
	}
	/* The XML scanner on raw input too. */
	char *s = strndup((const char *)data, size);
	if (s) {
		free(domxml_saved_rewrite(s, &v, err));
		int n = domxml_other_disks(s, refs, VMM_MAX_DISKS);
		if (n > 0)
			domxml_disk_refs_free(refs, n);
		free(s);
	}
	return 0;
}
