/*
 * The preview listener's routing: the Host header of a request's head
 * names the session and guest port, as PORT-SESSION.localhost[:p].  Pure
 * parsing of untrusted bytes (a fuzz target links this alone).
 */
#ifndef TENKI_HOSTROUTE_H
#define TENKI_HOSTROUTE_H

#include <stddef.h>

#include "util.h"

enum hostroute_status {
	HR_OK = 0,
	HR_MORE = 1,	 /* the head is not complete yet */
	HR_NO_HOST = -1, /* complete, but no usable Host header */
	HR_BAD = -2,	 /* not an HTTP request head */
};

/*
 * Look at the first len bytes a client sent.  On HR_OK, *port (1..65535)
 * and name (a valid session name) say where the request goes.
 */
int hostroute_parse(const char *buf, size_t len, int *port,
		    char name[NAME_MAX_LEN + 1]);

/* The host part alone ("8000-demo.localhost:8090"): 0 or -1. */
int hostroute_host(const char *host, size_t len, int *port,
		   char name[NAME_MAX_LEN + 1]);

#endif
