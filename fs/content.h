/* What each generated file of the tree says. */
#ifndef TENKI_CONTENT_H
#define TENKI_CONTENT_H

#include <stdbool.h>

#include "tree.h"

/*
 * The text of a K_TEXT or K_WAIT file, malloc'd, with model_lock held.
 * For K_WAIT files *ready is false (and NULL returned) while the reader
 * must keep waiting.  Returns NULL with *err set on failure.
 */
char *content_text(const struct node *n, bool *ready, int *err);

#endif
