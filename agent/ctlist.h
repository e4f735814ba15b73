/*
 * ctlist: the controller addresses an agent dials (`--controller
 * a:7071,b:7071,c:7071`, docs/agent.md "Several controllers"): parsed once,
 * shared by `run` (which fails over between them) and `join` (which takes
 * the first that answers).
 */
#ifndef CLOUD_AGENT_CTLIST_H
#define CLOUD_AGENT_CTLIST_H

#include <stddef.h>

#define CTLIST_MAX 16

struct ctaddr {
    char *text; /* as given: "ctl1.example:7071", "[::1]:7071" */
    char *host; /* brackets of an IPv6 address removed */
    char *port;
};

/*
 * Parses HOST:PORT[,HOST:PORT...] (at most CTLIST_MAX, no empty item).
 * 0 with *out (free with ctlist_free), or -1 with a sentence in why.
 */
int ctlist_parse(const char *spec, struct ctaddr **out, size_t *n, char *why,
                 size_t whylen);
void ctlist_free(struct ctaddr *a, size_t n);

#endif
