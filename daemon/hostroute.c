/* Host header routing of the preview listener (see hostroute.h). */
#include "hostroute.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define SUFFIX ".localhost"

/* Where the head ends ("\r\n\r\n" or a bare "\n\n"), or NULL. */
static const char *head_end(const char *buf, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return buf + i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return buf + i + 3;
	}
	return NULL;
}

int hostroute_host(const char *host, size_t len, int *port,
		   char name[NAME_MAX_LEN + 1])
{
	size_t i, digits, nlen;
	long p = 0;

	/* An optional :PORT of the listener itself. */
	for (i = len; i > 0 && isdigit((unsigned char)host[i - 1]); i--)
		;
	if (i > 0 && i < len && host[i - 1] == ':')
		len = i - 1;
	if (len > 0 && host[len - 1] == '.') /* a fully qualified name */
		len--;
	if (len <= strlen(SUFFIX) ||
	    strncasecmp(host + len - strlen(SUFFIX), SUFFIX, strlen(SUFFIX)))
		return -1;
	len -= strlen(SUFFIX);
	for (digits = 0; digits < len && isdigit((unsigned char)host[digits]);
	     digits++)
		p = p * 10 + (host[digits] - '0');
	if (digits == 0 || digits > 5 || host[0] == '0' || p > 65535 ||
	    digits >= len || host[digits] != '-')
		return -1;
	nlen = len - digits - 1;
	if (nlen == 0 || nlen > NAME_MAX_LEN)
		return -1;
	memcpy(name, host + digits + 1, nlen);
	name[nlen] = '\0';
	if (!valid_name(name))
		return -1;
	*port = (int)p;
	return 0;
}

int hostroute_parse(const char *buf, size_t len, int *port,
		    char name[NAME_MAX_LEN + 1])
{
	const char *end = head_end(buf, len), *p, *nl;
	const char *host = NULL;
	size_t hlen = 0;

	/* The request line: a method token, a space. */
	for (p = buf; p < buf + len && isupper((unsigned char)*p); p++)
		;
	if (p < buf + len && (p == buf || *p != ' '))
		return HR_BAD;
	if (!end)
		return HR_MORE;
	nl = memchr(buf, '\n', (size_t)(end - buf));
	for (p = nl + 1; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		size_t l = (size_t)(nl - p);
		if (l > 0 && p[l - 1] == '\r')
			l--;
		if (l < 5 || strncasecmp(p, "host:", 5) != 0)
			continue;
		if (host)
			return HR_NO_HOST; /* two Host headers: ambiguous */
		host = p + 5;
		hlen = l - 5;
		while (hlen > 0 && (*host == ' ' || *host == '\t')) {
			host++;
			hlen--;
		}
		while (hlen > 0 &&
		       (host[hlen - 1] == ' ' || host[hlen - 1] == '\t'))
			hlen--;
	}
	if (!host || hostroute_host(host, hlen, port, name) < 0)
		return HR_NO_HOST;
	return HR_OK;
}
