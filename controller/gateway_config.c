/*
 * gateway_config: effective configs in desired sets (see gateway_config.h).
 * The specs point into the parsed JSON, which the set keeps alive until the
 * set is packed and sent.
 */
#define LOG_MODULE "gateway"

#include "gateway_config.h"

#include <string.h>

#include <jansson.h>

#include "log.h"
#include "mem.h"

struct gwcfg_one {
    const char *id;
    uint64_t version;
    json_t *json;
    size_t n;
    Cloud__Agent__InstanceSpec__ConfigEntry *entries, **pentries;
    Cloud__Agent__ConfigUpdate__ConfigEntry *uentries, **puentries;
    /* the boot line: env and args */
    json_t *env, *args;
    Cloud__Agent__InstanceSpec__EnvEntry *eentries, **peentries;
    char **argv;
};

struct gwcfg_set {
    size_t n;
    struct gwcfg_one *v;
};

struct gwcfg_set *
gwcfg_set_new(size_t n)
{
    struct gwcfg_set *set = xcalloc(1, sizeof(*set));

    set->n = n;
    set->v = xcalloc(n + 1, sizeof(*set->v));
    return set;
}

void
gwcfg_fill(struct gwcfg_set *set, size_t i, Cloud__Agent__InstanceSpec *spec,
           uint64_t version, const char *json)
{
    struct gwcfg_one *o;
    json_error_t e;
    const char *k;
    json_t *v;
    size_t j = 0;

    if (i >= set->n)
        return;
    o = &set->v[i];
    o->id = spec->id;
    spec->config_version = 0;
    spec->n_config = 0;
    spec->config = NULL;
    if (version == 0 || json == NULL)
        return;
    o->json = json_loads(json, 0, &e);
    if (o->json == NULL || !json_is_object(o->json)) {
        log_warnx("instance %s: effective config version %llu is not a JSON "
                  "object: %s",
                  spec->id, (unsigned long long)version,
                  o->json ? "wrong type" : e.text);
        json_decref(o->json);
        o->json = NULL;
        return;
    }
    o->n = json_object_size(o->json);
    o->entries = xcalloc(o->n + 1, sizeof(*o->entries));
    o->pentries = xcalloc(o->n + 1, sizeof(*o->pentries));
    json_object_foreach(o->json, k, v) {
        if (!json_is_string(v) || j >= o->n)
            continue;
        cloud__agent__instance_spec__config_entry__init(&o->entries[j]);
        o->entries[j].key = (char *)k;
        o->entries[j].value = (char *)json_string_value(v);
        o->pentries[j] = &o->entries[j];
        j++;
    }
    o->n = j;
    o->version = version;
    spec->config_version = version;
    spec->n_config = o->n;
    spec->config = o->pentries;
}

void
gwcfg_fill_boot(struct gwcfg_set *set, size_t i,
                Cloud__Agent__InstanceSpec *spec, const char *env_json,
                const char *args_json)
{
    struct gwcfg_one *o;
    json_error_t e;
    const char *k;
    json_t *v;
    size_t j = 0, n;

    spec->n_env = 0;
    spec->env = NULL;
    spec->n_args = 0;
    spec->args = NULL;
    if (i >= set->n)
        return;
    o = &set->v[i];
    if (env_json != NULL) {
        o->env = json_loads(env_json, 0, &e);
        if (o->env == NULL || !json_is_object(o->env)) {
            log_warnx("instance %s: env is not a JSON object; sent empty",
                      spec->id);
            json_decref(o->env);
            o->env = NULL;
        }
    }
    if (o->env != NULL) {
        n = json_object_size(o->env);
        o->eentries = xcalloc(n + 1, sizeof(*o->eentries));
        o->peentries = xcalloc(n + 1, sizeof(*o->peentries));
        json_object_foreach(o->env, k, v) {
            if (!json_is_string(v) || j >= n)
                continue;
            cloud__agent__instance_spec__env_entry__init(&o->eentries[j]);
            o->eentries[j].key = (char *)k;
            o->eentries[j].value = (char *)json_string_value(v);
            o->peentries[j] = &o->eentries[j];
            j++;
        }
        spec->n_env = j;
        spec->env = o->peentries;
    }
    if (args_json != NULL) {
        o->args = json_loads(args_json, 0, &e);
        if (o->args == NULL || !json_is_array(o->args)) {
            log_warnx("instance %s: args are not a JSON array; sent empty",
                      spec->id);
            json_decref(o->args);
            o->args = NULL;
        }
    }
    if (o->args != NULL) {
        n = json_array_size(o->args);
        o->argv = xcalloc(n + 1, sizeof(*o->argv));
        for (j = 0; j < n; j++) {
            v = json_array_get(o->args, j);
            /* a non-string would shift the args: the agent gets "" and
             * the guest sees the hole */
            o->argv[j] = (char *)(json_is_string(v) ? json_string_value(v)
                                                     : "");
        }
        spec->n_args = n;
        spec->args = o->argv;
    }
}

void
gwcfg_strip(struct gwcfg_set *set, Cloud__Agent__InstanceSpec **specs,
            size_t n)
{
    (void)set;
    for (size_t i = 0; i < n; i++) {
        specs[i]->config_version = 0;
        specs[i]->n_config = 0;
        specs[i]->config = NULL;
    }
}

int
gwcfg_update(struct gwcfg_set *set, size_t i, Cloud__Agent__ConfigUpdate *out)
{
    struct gwcfg_one *o;

    if (i >= set->n || set->v[i].version == 0)
        return -1;
    o = &set->v[i];
    if (o->uentries == NULL) {
        o->uentries = xcalloc(o->n + 1, sizeof(*o->uentries));
        o->puentries = xcalloc(o->n + 1, sizeof(*o->puentries));
        for (size_t j = 0; j < o->n; j++) {
            cloud__agent__config_update__config_entry__init(&o->uentries[j]);
            o->uentries[j].key = o->entries[j].key;
            o->uentries[j].value = o->entries[j].value;
            o->puentries[j] = &o->uentries[j];
        }
    }
    cloud__agent__config_update__init(out);
    out->instance_id = (char *)o->id;
    out->version = o->version;
    out->n_config = o->n;
    out->config = o->puentries;
    return 0;
}

void
gwcfg_set_free(struct gwcfg_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++) {
        json_decref(set->v[i].json);
        json_decref(set->v[i].env);
        json_decref(set->v[i].args);
        free(set->v[i].eentries);
        free(set->v[i].peentries);
        free(set->v[i].argv);
        free(set->v[i].entries);
        free(set->v[i].pentries);
        free(set->v[i].uentries);
        free(set->v[i].puentries);
    }
    free(set->v);
    free(set);
}
