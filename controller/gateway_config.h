/*
 * gateway_config: the effective config (migrations/functions/cloud_effective_config.sql) in the
 * desired sets the gateway sends to agents. The desired-state query carries,
 * per instance, the effective config version and the config as a JSON
 * object of strings; this module turns them into InstanceSpec fields, and,
 * when a set would be over GWCFG_INLINE_MAX with every config inline, into
 * one ConfigUpdate per instance sent after a set without configs (a set
 * still too large for one frame then goes in parts: gateway_desired.c
 * desired_send).
 */
#ifndef CLOUD_GATEWAY_CONFIG_H
#define CLOUD_GATEWAY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "agent.pb-c.h"

/* Past this packed size a set goes without inline configs. */
#define GWCFG_INLINE_MAX (2u * 1024u * 1024u)

/* Owns what the specs' config fields point to, for one set. */
struct gwcfg_set;

struct gwcfg_set *gwcfg_set_new(size_t n);
/*
 * Fills spec i's config_version and config from the query's columns (json
 * may be NULL: no config). A config that is not an object of strings is
 * logged and sent as version 0 (the agent keeps what it has).
 */
void gwcfg_fill(struct gwcfg_set *set, size_t i,
                Cloud__Agent__InstanceSpec *spec, uint64_t version,
                const char *json);
/*
 * Fills spec i's env and args (the instance's boot line, issue 11) from the
 * query's JSON columns (env an object of strings, args an array of
 * strings; NULL: none). Anything else is logged and sent empty.
 */
void gwcfg_fill_boot(struct gwcfg_set *set, size_t i,
                     Cloud__Agent__InstanceSpec *spec, const char *env_json,
                     const char *args_json);
/* Clears every spec's config fields (the set is sent without them). */
void gwcfg_strip(struct gwcfg_set *set, Cloud__Agent__InstanceSpec **specs,
                 size_t n);
/* The ConfigUpdate for spec i (after gwcfg_strip); 0, or -1 when spec i
 * has no config to send. Points into set. */
int gwcfg_update(struct gwcfg_set *set, size_t i,
                 Cloud__Agent__ConfigUpdate *out);
void gwcfg_set_free(struct gwcfg_set *set);

#endif
