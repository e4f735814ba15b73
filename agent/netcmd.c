/*
 * netcmd: reads a host network plan from a JSON file and applies or
 * removes it through hostnet. The file:
 *   {"bridge": "cloudbr0", "gateway": "10.240.3.1/24",
 *    "cluster_cidr": "10.240.0.0/16", "vni": 4240, "vxlan": "cloudvx0",
 *    "underlay": "192.168.50.1", "mtu": 0,
 *    "peers": [{"underlay": "192.168.50.2", "subnet": "10.240.4.0/24"}]}
 * "mtu" may be left out (0: derived from the underlay interface). Prints
 * one line saying how many changes were made.
 */
#define LOG_MODULE "net"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "hostnet.h"
#include "log.h"
#include "mem.h"
#include "netcmd.h"

/* A required string member, or NULL after reporting. */
static const char *
plan_str(json_t *o, const char *key, const char *path)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_string(v)) {
        log_warnx("plan %s: \"%s\" must be a string", path, key);
        return NULL;
    }
    return json_string_value(v);
}

static int
plan_load(const char *path, json_t *root, struct hostnet_plan *p,
          struct hostnet_peer **peers)
{
    json_t *v, *arr, *e;
    size_t i;

    memset(p, 0, sizeof(*p));
    *peers = NULL;
    if (!json_is_object(root)) {
        log_warnx("plan %s: must be a JSON object", path);
        return -1;
    }
    if ((p->bridge = plan_str(root, "bridge", path)) == NULL ||
        (p->gateway = plan_str(root, "gateway", path)) == NULL ||
        (p->cluster_cidr = plan_str(root, "cluster_cidr", path)) == NULL ||
        (p->vxlan = plan_str(root, "vxlan", path)) == NULL ||
        (p->underlay = plan_str(root, "underlay", path)) == NULL)
        return -1;
    v = json_object_get(root, "vni");
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > 0xffffff) {
        log_warnx("plan %s: \"vni\" must be an integer from 1 to 16777215",
                  path);
        return -1;
    }
    p->vni = (uint32_t)json_integer_value(v);
    v = json_object_get(root, "mtu");
    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > 65535) {
            log_warnx("plan %s: \"mtu\" must be an integer from 0 to 65535",
                      path);
            return -1;
        }
        p->mtu = (unsigned)json_integer_value(v);
    }
    arr = json_object_get(root, "peers");
    if (arr == NULL)
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) > HOSTNET_PEERS_MAX) {
        log_warnx("plan %s: \"peers\" must be an array of at most %d peers",
                  path, HOSTNET_PEERS_MAX);
        return -1;
    }
    *peers = xcalloc(json_array_size(arr) + 1, sizeof(**peers));
    json_array_foreach(arr, i, e) {
        if (!json_is_object(e) ||
            ((*peers)[i].underlay = plan_str(e, "underlay", path)) == NULL ||
            ((*peers)[i].subnet = plan_str(e, "subnet", path)) == NULL) {
            log_warnx("plan %s: peer %zu must be an object with \"underlay\" and \"subnet\" strings",
                      path, i);
            return -1;
        }
    }
    p->peers = *peers;
    p->npeers = json_array_size(arr);
    return 0;
}

int
netcmd_run(const char *sub, const char *plan_path)
{
    struct hostnet_peer *peers = NULL;
    struct hostnet_plan plan;
    json_error_t jerr;
    json_t *root = NULL;
    struct stat st;
    char why[512];
    int n, rc = 1;

    if (sub == NULL ||
        (strcmp(sub, "apply") != 0 && strcmp(sub, "remove") != 0)) {
        log_warnx("net: the subcommand must be apply or remove, not %s",
                  sub ? sub : "(none)");
        return 2;
    }
    if (plan_path == NULL) {
        log_warnx("net %s: --plan FILE is required", sub);
        return 2;
    }
    if (stat(plan_path, &st) < 0) {
        log_warn("plan %s: cannot stat it", plan_path);
        return 1;
    }
    if (st.st_size > NETCMD_PLAN_MAX) {
        log_warnx("plan %s: %lld bytes, at most %d", plan_path,
                  (long long)st.st_size, NETCMD_PLAN_MAX);
        return 1;
    }
    root = json_load_file(plan_path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        log_warnx("plan %s: line %d: %s", plan_path, jerr.line, jerr.text);
        return 1;
    }
    if (plan_load(plan_path, root, &plan, &peers) < 0)
        goto cleanup;
    if (strcmp(sub, "apply") == 0)
        n = hostnet_apply(&plan, why, sizeof(why));
    else
        n = hostnet_remove(plan.bridge, plan.vxlan, why, sizeof(why));
    if (n < 0) {
        log_warnx("%s", why);
        goto cleanup;
    }
    printf("net %s: %d change%s\n", sub, n, n == 1 ? "" : "s");
    rc = fflush(stdout) == 0 ? 0 : 1;

cleanup:
    free(peers);
    json_decref(root);
    return rc;
}
