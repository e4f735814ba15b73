/*
 * netpolicy_cli: `cloud-agent net policy`, the operator's and the tests'
 * way into netpolicy_apply without a controller. Reads a policy as JSON
 * (docs/network-policy.md) and applies it, or removes table inet cloud.
 * Owns nothing beyond the parsed document while the command runs.
 */
#define LOG_MODULE "netpolicy"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "log.h"
#include "mem.h"
#include "netpolicy.h"

#define NETPOLICY_FILE_MAX (64u << 20) /* bytes of JSON */

static void
np_usage(FILE *fp)
{
    fputs("usage: cloud-agent net policy --file FILE.json\n"
          "       cloud-agent net policy --remove\n"
          "  replaces (or deletes) nftables table inet cloud; FILE.json:\n"
          "  {\"cluster_cidr\": \"10.240.0.0/16\", \"subnet\": \"10.240.3.0/24\",\n"
          "   \"bridge\": \"cloudbr0\", \"gateway\": \"10.240.3.1\",\n"
          "   \"instances\": [{\"address\": \"10.240.3.5\", \"open\": false,\n"
          "                  \"allowed\": [\"10.240.3.6\"]}]}\n",
          fp);
}

/* A string member of o, or NULL (reported) when absent or not a string. */
static const char *
np_str(json_t *o, const char *key, const char *file)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_string(v)) {
        log_warnx("%s: \"%s\" is missing or not a string", file, key);
        return NULL;
    }
    return json_string_value(v);
}

/* Fills p from doc; the strings stay owned by doc. insts and the allowed
 * arrays are xmalloc'd into *insts_out / *lists_out for the caller to free. */
static int
np_parse(json_t *doc, const char *file, struct netpolicy *p,
         struct netpolicy_inst **insts_out, const char ***lists_out)
{
    struct netpolicy_inst *insts = NULL;
    const char **lists = NULL;
    size_t i, j, n, pairs = 0, at = 0;
    json_t *arr, *in, *al;

    if (!json_is_object(doc)) {
        log_warnx("%s: the policy is not a JSON object", file);
        return -1;
    }
    if ((p->cluster_cidr = np_str(doc, "cluster_cidr", file)) == NULL ||
        (p->subnet = np_str(doc, "subnet", file)) == NULL ||
        (p->bridge = np_str(doc, "bridge", file)) == NULL ||
        (p->gateway = np_str(doc, "gateway", file)) == NULL)
        return -1;
    arr = json_object_get(doc, "instances");
    if (!json_is_array(arr) || (n = json_array_size(arr)) > NETPOLICY_MAX_INSTS) {
        log_warnx("%s: \"instances\" is not an array of at most %d entries",
                  file, NETPOLICY_MAX_INSTS);
        return -1;
    }
    json_array_foreach(arr, i, in) {
        al = json_object_get(in, "allowed");
        if (al != NULL && !json_is_array(al)) {
            log_warnx("%s: instances[%zu].allowed is not an array", file, i);
            return -1;
        }
        if (json_array_size(al) > NETPOLICY_MAX_PAIRS - pairs) {
            log_warnx("%s: more than %d allowed (instance, source) pairs",
                      file, NETPOLICY_MAX_PAIRS);
            return -1;
        }
        pairs += json_array_size(al);
    }
    insts = xcalloc(n ? n : 1, sizeof(*insts));
    lists = xcalloc(pairs ? pairs : 1, sizeof(*lists));
    json_array_foreach(arr, i, in) {
        json_t *open = json_object_get(in, "open"), *v;

        if (!json_is_object(in) ||
            (insts[i].address = np_str(in, "address", file)) == NULL)
            goto fail;
        if (open != NULL && !json_is_boolean(open)) {
            log_warnx("%s: instances[%zu].open is not a boolean", file, i);
            goto fail;
        }
        insts[i].open = json_is_true(open);
        al = json_object_get(in, "allowed");
        insts[i].allowed = lists + at;
        json_array_foreach(al, j, v) {
            if (!json_is_string(v)) {
                log_warnx("%s: instances[%zu].allowed[%zu] is not a string",
                          file, i, j);
                goto fail;
            }
            lists[at++] = json_string_value(v);
        }
        insts[i].nallowed = json_array_size(al);
    }
    p->insts = insts;
    p->ninsts = n;
    *insts_out = insts;
    *lists_out = lists;
    return 0;
fail:
    free(insts);
    free(lists);
    return -1;
}

static int
np_apply_file(const char *file)
{
    struct netpolicy p = {0};
    struct netpolicy_inst *insts = NULL;
    const char **lists = NULL;
    json_error_t jerr;
    json_t *doc = NULL;
    struct stat st;
    char why[512];
    int rc = 1;

    if (stat(file, &st) < 0) {
        log_warn("%s", file);
        return 1;
    }
    if (st.st_size > (off_t)NETPOLICY_FILE_MAX) {
        log_warnx("%s: %lld bytes, at most %u", file, (long long)st.st_size,
                  NETPOLICY_FILE_MAX);
        return 1;
    }
    if ((doc = json_load_file(file, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
        log_warnx("%s:%d: %s", file, jerr.line, jerr.text);
        return 1;
    }
    if (np_parse(doc, file, &p, &insts, &lists) < 0)
        goto cleanup;
    if (netpolicy_apply(&p, why, sizeof(why)) < 0) {
        log_warnx("%s", why);
        goto cleanup;
    }
    log_info("table inet cloud replaced: %zu instances on bridge %s", p.ninsts,
             p.bridge);
    rc = 0;
cleanup:
    free(insts);
    free(lists);
    json_decref(doc);
    return rc;
}

int
netpolicy_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"file", required_argument, NULL, 'f'},
        {"remove", no_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = NULL;
    int del = 0, ch;
    char why[512];

    optind = 1;
    while ((ch = getopt_long(argc, argv, "f:rh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'f':
            file = optarg;
            break;
        case 'r':
            del = 1;
            break;
        case 'h':
            np_usage(stdout);
            return 0;
        default:
            np_usage(stderr);
            return 2;
        }
    }
    if (optind != argc || (file == NULL) == !del) {
        np_usage(stderr);
        return 2;
    }
    if (del) {
        if (netpolicy_remove(why, sizeof(why)) < 0) {
            log_warnx("%s", why);
            return 1;
        }
        log_info("table inet cloud deleted");
        return 0;
    }
    return np_apply_file(file);
}
