/* netpolicy internals the unit test reaches: the script builder. */
#ifndef CLOUD_AGENT_NETPOLICY_PRIV_H
#define CLOUD_AGENT_NETPOLICY_PRIV_H

#include <stddef.h>

#include "netpolicy.h"

#define NETPOLICY_TABLE "cloud" /* table inet cloud */

/* The whole nft script netpolicy_apply commits for p (delete + the new
 * table), built only from values parsed and printed back, never from the
 * caller's text: a string is either a valid address, prefix or interface
 * name, or p is refused. Returns the script (xmalloc'd) or NULL with why. */
char *netpolicy_script(const struct netpolicy *p, char *why, size_t whylen);

/* Runs script as one libnftables transaction; what names it in why
 * ("replace table inet cloud"), with the first line of nft's error, as one
 * sentence. 0 or -1. */
int netpolicy_run(const char *script, const char *what, char *why,
                  size_t whylen);

#endif
