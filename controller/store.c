/*
 * store: the statement table. The API and every later module name a
 * statement by its enum; the SQL lives here only. Lists fetch limit+1 rows so
 * the caller knows whether a next page exists.
 */
#include "store.h"

/* A service's JSON as the API shows it: with "running", the count of its
 * running instances (the read cache adds the same from memory). */
#define SERVICE_JSON_RUNNING                                                  \
    "left(cloud_service_json(s)::text, -1) || ',\"running\":' || "            \
    "(SELECT count(*) FROM instances i WHERE i.service_id = s.id "            \
    "AND i.state = 'running') || '}'"

/* The reconciler's columns of an instance (store.h REC_INSTANCES_*). */
#define REC_INSTANCES_SELECT                                                  \
    "SELECT i.id, i.name, i.service_id, i.ordinal, i.generation, "            \
    "i.state, i.desired_state, i.host_id, i.vcpus, i.memory_mib, "            \
    "i.disk_gib, i.restart, "                                                 \
    "coalesce((SELECT string_agg(c.value, ', ') "                             \
    "FROM jsonb_array_elements_text(i.constraints) c), ''), "                 \
    "i.strategy, i.max_per_host, i.exit_code, i.restart_count, "              \
    "cloud_ms(i.next_restart_at), cloud_ms(i.finished_at), "                  \
    "cloud_ms(i.created_at), i.pending_reason, i.version "                    \
    "FROM instances i "

/*
 * SEL's rows whose COL is in the text[] $1, or every row when $1 is NULL.
 * Two branches, not "$1 IS NULL OR COL = ANY($1)": the generic plan of
 * that is a sequential scan comparing each row with every id (1.2 s for
 * 1,000 ids among 100,000 instances, where the index takes 5 ms; issue
 * 13). Here the first branch uses the primary key and the second runs
 * only for NULL.
 */
#define BY_IDS_OR_ALL(SEL, COL)                                               \
    SEL "WHERE " COL " = ANY($1::text[]) UNION ALL " SEL                      \
        "WHERE $1::text[] IS NULL"
#define CACHE_INSTANCES_SELECT                                                \
    "SELECT i.id, i.name, s.name, h.name, i.state, i.desired_state, "         \
    "i.version, cloud_instance_json(i), i.labels FROM instances i "           \
    "LEFT JOIN services s ON s.id = i.service_id "                            \
    "LEFT JOIN hosts h ON h.id = i.host_id "
#define CACHE_SERVICES_SELECT                                                 \
    "SELECT s.id, s.name, s.state, s.version, "                               \
    "cloud_service_json(s), s.labels FROM services s "
#define REC_HOSTS_SELECT                                                      \
    "SELECT h.id, h.name, h.state, h.version, h.cap_vcpus, "                  \
    "h.cap_memory_mib, h.cap_disk_gib, h.hypervisor, "                        \
    "coalesce((SELECT string_agg(l.key || '=' || l.value, "                   \
    "E'\\n' ORDER BY l.key) "                                                 \
    "FROM jsonb_each_text(h.labels) l), ''), "                                \
    "h.session_epoch FROM hosts h "
#define REC_SERVICES_SELECT                                                   \
    "SELECT s.id, s.name, s.state, s.version, s.replicas, "                   \
    "s.generation, s.max_unavailable, s.max_surge, "                          \
    "s.restart FROM services s "

const struct db_stmt store_stmts[ST__COUNT] = {
    [ST_READY] = {"ready",
                  "SELECT coalesce(max(version), 0) FROM schema_migrations", 0,
                  1},
    [ST_SERVICE_GET] = {"service_get",
                        "SELECT " SERVICE_JSON_RUNNING ", s.version "
                        "FROM services s WHERE s.name = $1",
                        1, OBJECT_GET__NCOLS},
    [ST_SERVICE_LIST] = {"service_list",
                         "SELECT s.name, " SERVICE_JSON_RUNNING
                         " FROM services s "
                         "WHERE ($1::text IS NULL OR s.name > $1) "
                         "AND ($2::text IS NULL OR s.state = $2) "
                         "ORDER BY s.name LIMIT $3::integer",
                         3, SERVICE_LIST__NCOLS},
    [ST_INSTANCE_GET] = {"instance_get",
                         "SELECT cloud_instance_json(i), i.version "
                         "FROM instances i "
                         "WHERE i.id = cloud_instance_resolve($1)",
                         1, OBJECT_GET__NCOLS},
    [ST_INSTANCE_LIST] =
        {"instance_list",
         "SELECT i.id, cloud_instance_json(i) FROM instances i "
         "WHERE ($1::text IS NULL OR i.id > $1) "
         "AND ($2::text IS NULL OR i.service_id = "
         "(SELECT id FROM services WHERE name = $2)) "
         "AND ($3::text IS NULL OR i.state = $3) "
         "AND ($4::text IS NULL OR i.host_id = "
         "(SELECT id FROM hosts WHERE name = $4)) "
         "AND ($5::text IS NULL OR i.desired_state = $5) "
         "ORDER BY i.id LIMIT $6::integer",
         6, INSTANCE_LIST__NCOLS},
    [ST_HOST_GET] = {"host_get",
                     "SELECT cloud_host_json(h), h.version FROM hosts h "
                     "WHERE h.name = $1",
                     1, OBJECT_GET__NCOLS},
    [ST_HOST_LIST] = {"host_list",
                      "SELECT h.name, cloud_host_json(h) FROM hosts h "
                      "WHERE ($1::text IS NULL OR h.name > $1) "
                      "AND ($2::text IS NULL OR h.state = $2) "
                      "ORDER BY h.name LIMIT $3::integer",
                      3, HOST_LIST__NCOLS},
    /* $1 NULL: from the oldest kept event; since below the low-water
     * mark: CL410 (migrations/functions/cloud_event_page.sql) */
    [ST_EVENT_LIST] = {"event_list",
                       "SELECT id, type, object, json, object_id "
                       "FROM cloud_event_page($1::bigint, $2, $3, "
                       "$4::integer)",
                       4, EVENT_LIST__NCOLS},
    [ST_EVENT_MAX] = {"event_max", "SELECT coalesce(max(id), 0) FROM events", 0,
                      1},
    [ST_IMAGE_GET] = {"image_get",
                      "SELECT cloud_image_json(i) FROM cloud_image_find($1) i "
                      "WHERE i.id IS NOT NULL",
                      1, 1},
    [ST_IMAGE_LIST] =
        {"image_list",
         "SELECT i.name || ':' || i.tag, cloud_image_json(i) "
         "FROM images i "
         "WHERE ($1::text IS NULL OR i.name || ':' || i.tag > $1) "
         "ORDER BY 1 LIMIT $2::integer",
         2, IMAGE_LIST__NCOLS},
    [ST_OBJECT_COUNTS] = {"object_counts",
                          "SELECT 'instances', state, count(*) FROM instances "
                          "GROUP BY state UNION ALL "
                          "SELECT 'hosts', state, count(*) FROM hosts "
                          "GROUP BY state UNION ALL "
                          "SELECT 'services', state, count(*) FROM services "
                          "GROUP BY state",
                          0, OBJECT_COUNTS__NCOLS},
    [ST_CACHE_INSTANCES] =
        {"cache_instances", BY_IDS_OR_ALL(CACHE_INSTANCES_SELECT, "i.id"), 1,
         CACHE_INSTANCES__NCOLS},
    [ST_CACHE_SERVICES] = {"cache_services",
                           BY_IDS_OR_ALL(CACHE_SERVICES_SELECT, "s.id"), 1,
                           CACHE_SERVICES__NCOLS},
    [ST_BATCH] = {"batch",
                  "SELECT idx, status, body, err_state, err_message, "
                  "err_field, event_id "
                  "FROM cloud_batch($1::jsonb, $2::boolean)",
                  2, BATCH__NCOLS},
    /* the columns of ST_BATCH */
    [ST_CREATE_MANY] = {"create_many",
                        "SELECT idx, status, body, err_state, err_message, "
                        "err_field, event_id "
                        "FROM cloud_instance_create_many($1::jsonb, $2)",
                        2, BATCH__NCOLS},
    [ST_TOKENS_LOAD] = {"tokens_load",
                        "SELECT encode(secret_sha256, 'hex'), name, role, "
                        "extract(epoch FROM expires_at)::bigint FROM tokens "
                        "WHERE revoked_at IS NULL "
                        "AND (expires_at IS NULL OR expires_at > now())",
                        0, TOKENS_LOAD__NCOLS},
    [ST_TOKEN_LIST] = {"token_list",
                       "SELECT t.name, cloud_token_json(t) FROM tokens t "
                       "WHERE ($1::text IS NULL OR t.name > $1) "
                       "ORDER BY t.name LIMIT $2::integer",
                       2, TOKEN_LIST__NCOLS},
    /* reconciler statements below this line */
    /* migrations/functions/cloud_rec_*.sql; docs/reconciler.md */
    [ST_LEASE_ACQUIRE] = {"lease_acquire",
                          "SELECT epoch, now_ms, took_over "
                          "FROM cloud_lease_acquire($1, $2::bigint, "
                          "$3::integer)",
                          3, LEASE_ACQUIRE__NCOLS},
    [ST_LEASE_RELEASE] = {"lease_release",
                          "SELECT cloud_lease_release($1, $2::bigint)", 2, 1},
    [ST_REC_LIVENESS] = {"rec_liveness",
                         "SELECT kind, id FROM cloud_rec_liveness($1::bigint, "
                         "$2, $3::bigint)",
                         3, REC_TOUCHED__NCOLS},
    [ST_REC_APPLY] = {"rec_apply",
                      "SELECT kind, id FROM cloud_reconcile($1::bigint, $2, "
                      "$3::jsonb)",
                      3, REC_TOUCHED__NCOLS},
    [ST_REC_HOSTS] = {"rec_hosts", BY_IDS_OR_ALL(REC_HOSTS_SELECT, "h.id"), 1,
                      REC_HOSTS__NCOLS},
    [ST_REC_SERVICES] = {"rec_services",
                         BY_IDS_OR_ALL(REC_SERVICES_SELECT, "s.id"), 1,
                         REC_SERVICES__NCOLS},
    [ST_REC_INSTANCES] = {"rec_instances",
                          /* by id only: a full load goes by pages */
                          REC_INSTANCES_SELECT "WHERE i.id = ANY($1::text[])",
                          1, REC_INSTANCES__NCOLS},
    /* A full load in pages of $2 after id $1 (keyset, the primary key's
     * order): each page is applied in a turn of the loop of its own. */
    [ST_REC_INSTANCES_PAGE] = {"rec_instances_page",
                               REC_INSTANCES_SELECT
                               "WHERE i.id > $1 ORDER BY i.id LIMIT $2::integer",
                               2, REC_INSTANCES__NCOLS},
    [ST_SETTINGS_GET] =
        {"settings_get",
         "SELECT cloud_settings_json(s) FROM cluster_settings s "
         "WHERE s.id = 1",
         0, 1},
    [ST_SETTINGS_PATCH] = {"settings_patch",
                           "SELECT status, body FROM cloud_settings_patch("
                           "$1::jsonb, $2::bigint, $3)",
                           3, SETTINGS_PATCH__NCOLS},
    /* end of reconciler statements */
    /* agent gateway statements (gateway_*.c,
       migrations/functions/cloud_agent_*.sql) */
    /* Both with the settings agents are told (Welcome, HeartbeatAck). */
    [ST_AGENT_REGISTER] = {"agent_register",
                           "SELECT r.host_id, r.session_epoch, "
                           "s.down_after_seconds, s.fence_after_seconds "
                           "FROM cloud_agent_register($1::jsonb) r, "
                           "cluster_settings s WHERE s.id = 1",
                           1, AGENT_REGISTER__NCOLS},
    [ST_AGENT_HEARTBEATS] = {"agent_heartbeats",
                             "SELECT cloud_agent_heartbeats($1::jsonb), "
                             "s.down_after_seconds, s.fence_after_seconds "
                             "FROM cluster_settings s WHERE s.id = 1",
                             1, AGENT_HEARTBEATS__NCOLS},
    [ST_AGENT_STATUS] = {"agent_status",
                         "SELECT idx, refused "
                         "FROM cloud_agent_status($1::jsonb, $2::boolean)",
                         2, AGENT_STATUS__NCOLS},
    /* A host's desired set: every instance placed there until its agent
     * confirms removal (deleted ones included, so the agent stops them). */
    [ST_AGENT_DESIRED] =
        {"agent_desired",
         /* 0010: the effective config, computed once per service (the
          * CTE is materialized: a join would re-run it per instance) */
         "WITH ec AS MATERIALIZED (SELECT d.service_id, e.version, "
         "e.config::text AS config "
         "FROM (SELECT DISTINCT service_id FROM instances "
         "WHERE host_id = $1 AND service_id IS NOT NULL) d, "
         "LATERAL cloud_effective_config(d.service_id) e), "
         /* the image of each distinct reference once, not per instance
          * (issue 13: 100 calls made most of a 100-instance read) */
         "im AS MATERIALIZED (SELECT d.image, f.kind, f.kernel_digest, "
         "f.initrd_digest, f.disk_digest, f.cmdline "
         "FROM (SELECT DISTINCT image FROM instances WHERE host_id = $1) d, "
         "LATERAL cloud_image_find(d.image) f) "
         "SELECT i.id, i.name, i.generation, i.desired_state, "
         "coalesce(i.stop_signal, 'TERM'), i.vcpus, i.memory_mib, i.disk_gib, "
         "img.kind, img.kernel_digest, img.initrd_digest, img.disk_digest, "
         /* AGENT_DESIRED_CMDLINE: the image's own cmdline; the agent
          * appends AGENT_DESIRED_ARGS, quoted (common/cmdline.h) */
         "img.cmdline, "
         "coalesce(s.partition_policy, 'keep'), i.restart_count, "
         "coalesce(ec.version, 0), ec.config, "
         /* AGENT_DESIRED_STOP_GRACE_MS, 0018: the kill's own grace,
          * else the instance's */
         "coalesce(i.kill_grace_seconds, i.stop_grace_seconds) * 1000, "
         /* AGENT_DESIRED_ENV, _ARGS: the boot line's (issue 11) */
         "i.env::text, i.args::text "
         "FROM instances i "
         "LEFT JOIN services s ON s.id = i.service_id "
         "LEFT JOIN im img ON img.image = i.image "
         "LEFT JOIN ec ON ec.service_id = i.service_id "
         "WHERE i.host_id = $1 ORDER BY i.id",
         1, AGENT_DESIRED__NCOLS},
    [ST_AGENT_HOSTS_OF] = {"agent_hosts_of",
                           "SELECT DISTINCT host_id FROM instances "
                           "WHERE id = ANY($1::text[]) AND host_id IS NOT NULL",
                           1, 1},
    [ST_HOST_NETWORK] = {"host_network",
                         "SELECT s.cluster_cidr::text, "
                         "coalesce(hs.subnet::text, ''), "
                         "coalesce(host(set_masklen(hs.subnet::inet, 32) + 1) "
                         "|| '/' || masklen(hs.subnet), ''), "
                         "coalesce((SELECT string_agg(h.id || ' ' || "
                         "h.underlay_address || ' ' || p.subnet::text, "
                         "E'\\n' ORDER BY h.id) FROM hosts h "
                         "JOIN host_subnets p ON p.host_id = h.id "
                         "WHERE h.id <> $1 AND h.underlay_address <> ''), '') "
                         "FROM cluster_settings s "
                         "LEFT JOIN host_subnets hs ON hs.host_id = $1 "
                         "WHERE s.id = 1",
                         1, HOST_NETWORK__NCOLS},
    /* end of agent gateway statements */
    /* agent enrolment and certificate revocation (join.c) */
    [ST_JOIN_TOKEN_CREATE] = {"join_token_create",
                              "SELECT cloud_ts(cloud_join_token_create($1, $2, "
                              "$3::bigint, $4))",
                              4, 1},
    [ST_JOIN_COMPLETE] = {"join_complete",
                          "SELECT cloud_join_complete($1, $2, $3, $4, "
                          "$5::timestamptz, $6)",
                          6, 1},
    [ST_JOIN_REVOKED] = {"join_revoked",
                         "SELECT serial FROM agent_certs "
                         "WHERE revoked_at IS NOT NULL "
                         "AND (not_after IS NULL OR not_after > now())",
                         0, 1},
    [ST_JOIN_CERT_REVOKE] = {"join_cert_revoke",
                             "SELECT cloud_cert_revoke($1, $2, $3)", 3, 1},
    [ST_JOIN_CERT_LIST] = {"join_cert_list",
                           "SELECT serial, coalesce(host_name, '-'), "
                           "coalesce(cloud_ts(not_after), '-'), "
                           "CASE WHEN revoked_at IS NOT NULL THEN 'revoked' "
                           "WHEN not_after <= now() THEN 'expired' "
                           "ELSE 'active' END "
                           "FROM agent_certs ORDER BY issued_at, serial",
                           0, JOIN_CERT_LIST__NCOLS},
    /* the API's lists: newest first, at most 1000 */
    [ST_JOIN_TOKEN_LIST_JSON] =
        {"join_token_list_json",
         "SELECT coalesce(json_agg(json_build_object('id', t.id, "
         "'created_at', cloud_ts(t.created_at), 'expires_at', "
         "cloud_ts(t.expires_at), 'used_at', cloud_ts(t.used_at), "
         "'used_by', t.used_by, 'state', CASE WHEN t.used_at IS NOT NULL "
         "THEN 'used' WHEN t.expires_at <= now() THEN 'expired' "
         "ELSE 'active' END)), '[]') FROM (SELECT * FROM join_tokens "
         "ORDER BY created_at DESC, id LIMIT 1000) t",
         0, 1},
    [ST_JOIN_CERT_LIST_JSON] =
        {"join_cert_list_json",
         "SELECT coalesce(json_agg(json_build_object('serial', c.serial, "
         "'host', c.host_name, 'issued_at', cloud_ts(c.issued_at), "
         "'not_after', cloud_ts(c.not_after), 'revoked_at', "
         "cloud_ts(c.revoked_at))), '[]') FROM (SELECT * FROM agent_certs "
         "ORDER BY issued_at DESC, serial LIMIT 1000) c",
         0, 1},
    /* an unused join token; a used one stays as the record of its join */
    [ST_JOIN_TOKEN_DELETE] = {"join_token_delete",
                              "DELETE FROM join_tokens WHERE id = $1 "
                              "AND used_at IS NULL RETURNING id",
                              1, 1},
    /* end of agent enrolment statements */
    /* labels (migrations/0020_baseline.sql): the lists of ST_INSTANCE_LIST and
     * ST_SERVICE_LIST with a label selector, equality terms as a jsonb
     * object (@>), bare keys as a jsonb array (?&) */
    [ST_INSTANCE_LIST_SEL] =
        {"instance_list_sel",
         "SELECT i.id, cloud_instance_json(i) FROM instances i "
         "WHERE ($1::text IS NULL OR i.id > $1) "
         "AND ($2::text IS NULL OR i.service_id = "
         "(SELECT id FROM services WHERE name = $2)) "
         "AND ($3::text IS NULL OR i.state = $3) "
         "AND ($4::text IS NULL OR i.host_id = "
         "(SELECT id FROM hosts WHERE name = $4)) "
         "AND ($5::text IS NULL OR i.desired_state = $5) "
         "AND i.labels @> $7::jsonb "
         "AND i.labels ?& ARRAY(SELECT jsonb_array_elements_text($8::jsonb)) "
         "ORDER BY i.id LIMIT $6::integer",
         8, INSTANCE_LIST__NCOLS},
    [ST_SERVICE_LIST_SEL] =
        {"service_list_sel",
         "SELECT s.name, " SERVICE_JSON_RUNNING " FROM services s "
         "WHERE ($1::text IS NULL OR s.name > $1) "
         "AND ($2::text IS NULL OR s.state = $2) "
         "AND s.labels @> $4::jsonb "
         "AND s.labels ?& ARRAY(SELECT jsonb_array_elements_text($5::jsonb)) "
         "ORDER BY s.name LIMIT $3::integer",
         5, SERVICE_LIST__NCOLS},
    /* end of labels statements */
    [ST_SERVICE_RUNNING] = {"service_running",
                            "SELECT count(*) FROM instances i "
                            "JOIN services s ON s.id = i.service_id "
                            "WHERE s.name = $1 AND i.state = 'running'",
                            1, 1},
    /* config, links and endpoints (migrations/functions/cloud_config_*.sql) */
    [ST_CONFIG_GET] = {"config_get",
                       "SELECT body, version "
                       "FROM cloud_config_get($1, $2::bigint)",
                       2, CONFIG_GET__NCOLS},
    [ST_CONFIG_WRITE] = {"config_write",
                         "SELECT status, body, version "
                         "FROM cloud_config_write($1, $2, $3::jsonb, "
                         "$4::bigint, $5)",
                         5, CONFIG_WRITE__NCOLS},
    [ST_CONFIG_HISTORY] = {"config_history",
                           "SELECT cloud_config_history($1, $2::bigint, "
                           "$3::integer)",
                           3, 1},
    /* the columns of ST_CONFIG_GET */
    [ST_INSTANCE_CONFIG] = {"instance_config",
                            "SELECT body, version "
                            "FROM cloud_instance_config($1)",
                            1, CONFIG_GET__NCOLS},
    [ST_ENDPOINTS_GET] = {"endpoints_get",
                          "SELECT body, version, "
                          "(SELECT id FROM services WHERE name = $1) "
                          "FROM cloud_endpoints_get($1)",
                          1, ENDPOINTS_GET__NCOLS},
    /* The hosts whose agents hold instances of the given services or of
     * services linking to them: a config or endpoints change concerns them. */
    [ST_CONFIG_HOSTS_OF] =
        {"config_hosts_of",
         "SELECT DISTINCT i.host_id FROM instances i "
         "JOIN services s ON s.id = i.service_id "
         "WHERE i.host_id IS NOT NULL AND (s.id = ANY($1::text[]) "
         "OR s.links ?| ARRAY(SELECT name FROM services "
         "WHERE id = ANY($1::text[])))",
         1, 1},
    /* end of config statements */
    /* live config push (gateway_desired.c): the instances of the given services
     * and of services linking to them, each with its host and its service's
     * effective config, computed once per service (materialized CTE). */
    [ST_CONFIG_PUSH] =
        {"config_push",
         "WITH sv AS (SELECT s.id FROM services s "
         "WHERE s.id = ANY($1::text[]) OR s.links ?| ARRAY(SELECT name "
         "FROM services WHERE id = ANY($1::text[]))), "
         "ec AS MATERIALIZED (SELECT sv.id AS service_id, e.version, "
         "e.config::text AS config "
         "FROM sv, LATERAL cloud_effective_config(sv.id) e) "
         "SELECT i.id, i.host_id, coalesce(ec.version, 0), ec.config "
         "FROM instances i JOIN ec ON ec.service_id = i.service_id "
         "WHERE i.host_id IS NOT NULL AND i.desired_state <> 'deleted' "
         "ORDER BY i.service_id, i.host_id",
         1, CONFIG_PUSH__NCOLS},
    /* end of live config push statements */
    /* run to running (watch.c): the hub's read of new events, each instance
     * event with its instance's host, its id (NULL: gone) and, for the last
     * event of an instance in the read, the reconciler's row (EVENT_HUB_REC).
     * Spares the gateway its hosts query and the reconciler its re-read
     * (store.h EVENT_HUB_*). $3: with the SSE JSON. */
    [ST_EVENT_HUB] =
        {"event_hub",
         "SELECT e.id, e.type, e.object, e.json, e.object_id, i.host_id, "
         "i.id, "
         /* EVENT_HUB_GUEST_*: a guest-only change (the instance's last
          * event in the read is instance.guest): what it moves, for the
          * read cache to patch its copy; NULL otherwise.
          * EVENT_HUB_UNUSED*: NULL (the whole cloud_instance_json would
          * cost 1-2 ms a row and delay every observer). */
         "CASE WHEN e.guest THEN i.version END, "
         "CASE WHEN e.guest THEN i.config_version END, "
         "CASE WHEN e.guest THEN i.ready END, "
         "CASE WHEN e.guest THEN i.addresses END, "
         "CASE WHEN e.guest THEN cloud_ts(i.updated_at) END, "
         "NULL, NULL, NULL, "
         /* EVENT_HUB_REC: the reconciler's row (ST_REC_INSTANCES), id NULL
          * unless this is the instance's last event in the read */
         "CASE WHEN e.last THEN i.id END, i.name, i.service_id, i.ordinal, "
         "i.generation, i.state, i.desired_state, i.host_id, i.vcpus, "
         "i.memory_mib, i.disk_gib, i.restart, "
         "CASE WHEN e.last AND i.id IS NOT NULL THEN "
         "coalesce((SELECT string_agg(c.value, ', ') "
         "FROM jsonb_array_elements_text(i.constraints) c), '') END, "
         "i.strategy, i.max_per_host, i.exit_code, i.restart_count, "
         "cloud_ms(i.next_restart_at), cloud_ms(i.finished_at), "
         "cloud_ms(i.created_at), i.pending_reason, i.version, "
         /* EVENT_HUB_LOW_WATER */
         "(SELECT w.low_water FROM events_pruned w WHERE w.id = 1) "
         "FROM (SELECT l.*, l.last AND l.type = 'instance.guest' AS guest "
         "FROM (SELECT ev.*, ev.object = 'instance' AND ev.id = max(ev.id) "
         "OVER (PARTITION BY ev.object, ev.object_id) AS last "
         "FROM (SELECT x.id, x.type, x.object, x.object_id, "
         "CASE WHEN $3::boolean THEN cloud_event_json(x) END AS json "
         "FROM events x WHERE x.id > $1::bigint "
         "ORDER BY x.id LIMIT $2::integer) ev) l) e "
         "LEFT JOIN instances i ON e.object = 'instance' "
         "AND i.id = e.object_id "
         "ORDER BY e.id",
         3, EVENT_HUB__NCOLS},
    /* end of run to running statements */
    /* event retention and blob GC (retention.c, api_blobs.c;
     * migrations/functions/cloud_events_prune.sql, cloud_blob_gc.sql) */
    [ST_EVENTS_PRUNE] = {"events_prune",
                         "SELECT deleted, low_water "
                         "FROM cloud_events_prune($1::integer)",
                         1, EVENTS_PRUNE__NCOLS},
    [ST_BLOB_GC] = {"blob_gc",
                    "SELECT digest, size FROM cloud_blob_gc($1::integer)", 1,
                    BLOB_GC__NCOLS},
    /* of the digests of files in this controller's blob directory, those
     * with no row (a file whose row another controller collected, or whose
     * upload was refused by the blob_bytes quota) */
    [ST_BLOB_UNKNOWN] = {"blob_unknown",
                         "SELECT d FROM unnest($1::text[]) d "
                         "WHERE NOT EXISTS (SELECT 1 FROM blobs b "
                         "WHERE b.digest = d)",
                         1, 1},
    /* end of retention statements */
    /* blob content (blobstore.c): the first statement of an upload's
     * transaction ('t': copy the chunks from the session), the size
     * of a blob and one of its chunks (binary result) for a cache fill */
    [ST_BLOB_PUT] = {"blob_put",
                     "SELECT cloud_blob_put($1, $2::bigint)", 2, 1},
    [ST_BLOB_SIZE] = {"blob_size",
                      "SELECT size FROM blobs WHERE digest = $1", 1, 1},
    [ST_BLOB_CHUNK_GET] = {"blob_chunk_get",
                           "SELECT data FROM blob_chunks "
                           "WHERE digest = $1 AND seq = $2::integer",
                           2, 1},
    /* end of blob content statements */
    /* upload sessions (api_blobs.c, blobstore.c): open one under the
     * cluster-wide quota (returns its id), store a piece ($3 binary) and
     * return the new offset, cancel (no row: 404), sweep the idle; for the
     * finishing PUT the offset and one piece (binary result), then in its
     * transaction the row locked, its pieces copied into blob_chunks in
     * offset order without leaving PostgreSQL, the session deleted with
     * its pieces */
    [ST_UPLOAD_START] = {"upload_start",
                         "SELECT cloud_upload_start($1, $2, $3::integer)", 3,
                         1},
    [ST_UPLOAD_PIECE] = {"upload_piece",
                         "SELECT cloud_upload_piece($1, $2::bigint, "
                         "$3::bytea, $4::bigint, $5::integer)",
                         5, 1},
    [ST_UPLOAD_CANCEL] = {"upload_cancel",
                          "DELETE FROM upload_sessions WHERE id = $1 "
                          "RETURNING id",
                          1, 1},
    [ST_UPLOAD_SWEEP] = {"upload_sweep",
                         "SELECT id, received "
                         "FROM cloud_upload_sweep($1::integer)",
                         1, UPLOAD_SWEEP__NCOLS},
    [ST_UPLOAD_RECEIVED] = {"upload_received",
                            "SELECT received FROM upload_sessions "
                            "WHERE id = $1",
                            1, 1},
    [ST_UPLOAD_PIECE_GET] = {"upload_piece_get",
                             "SELECT data FROM upload_pieces "
                             "WHERE session = $1 AND off = $2::bigint",
                             2, 1},
    [ST_UPLOAD_LOCK] = {"upload_lock",
                        "SELECT received FROM upload_sessions "
                        "WHERE id = $1 FOR UPDATE",
                        1, 1},
    [ST_UPLOAD_COPY] = {"upload_copy",
                        "INSERT INTO blob_chunks (digest, seq, data) "
                        "SELECT $1, (row_number() OVER (ORDER BY p.off) "
                        "- 1)::integer, p.data FROM upload_pieces p "
                        "WHERE p.session = $2",
                        2, 0},
    [ST_UPLOAD_END] = {"upload_end",
                       "DELETE FROM upload_sessions WHERE id = $1", 1, 0},
    /* end of upload session statements */
    /* console logs relayed between replicas (logrelay.c) */
    [ST_LOG_RELAY_ASK] = {"log_relay_ask",
                          "SELECT relay_id, holder FROM cloud_log_relay_ask("
                          "$1, $2, $3, $4::bigint, $5::integer, $6::boolean, "
                          "$7::integer)",
                          7, LOG_RELAY_ASK__NCOLS},
    [ST_LOG_RELAY_TAKE] = {"log_relay_take",
                           "SELECT relay_id, asker, host, instance_id, "
                           "tail_bytes, tail_lines, follow "
                           "FROM cloud_log_relay_take($1::bigint, $2)",
                           2, LOG_RELAY_TAKE__NCOLS},
    [ST_LOG_RELAY_PUT] = {"log_relay_put",
                          "SELECT cloud_log_relay_put($1::bigint, $2::integer, "
                          "$3, $4::bytea, $5::bigint, $6::integer, $7)",
                          7, 1},
    [ST_LOG_RELAY_READ] = {"log_relay_read",
                           "SELECT seq, kind, data, log_offset, status, message "
                           "FROM cloud_log_relay_read($1::bigint, "
                           "$2::integer)",
                           2, LOG_RELAY_READ__NCOLS},
    [ST_LOG_RELAY_END] = {"log_relay_end",
                          "SELECT cloud_log_relay_end($1::bigint, $2)", 2, 1},
    [ST_LOG_RELAY_BEAT] = {"log_relay_beat",
                           "SELECT relay_id, gone FROM cloud_log_relay_beat("
                           "$1, $2::jsonb, $3::jsonb, $4::integer)",
                           4, LOG_RELAY_BEAT__NCOLS},
    /* end of log relay statements */
};
