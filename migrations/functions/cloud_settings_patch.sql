-- p: the merge patch, validated by the controller (api_cluster.c); the
-- CHECKs are the last line. An empty patch changes nothing. A change of
-- the top-level settings (down_after_seconds, fence_after_seconds,
-- cluster_cidr, host_subnet_prefix) and
-- one of the nested settings are one version step but two
-- controller.settings events (the first names the top-level ones, the
-- second the nested keys), as before the functions were collapsed.
CREATE OR REPLACE FUNCTION cloud_settings_patch(p jsonb, p_if_match bigint, p_actor text,
                                                OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    before_v bigint;
    s cluster_settings;
    n cluster_settings;
    r jsonb := coalesce(p->'events_retention', '{}');
    q jsonb := coalesce(p->'quotas', '{}');
    b jsonb := coalesce(p->'blobs', '{}');
    changes text[] := '{}';
    sj jsonb;
    nj jsonb;
BEGIN
    -- The event lock before any row lock (docs/decisions.md §11).
    PERFORM pg_advisory_xact_lock(726200101);
    SELECT * INTO s FROM cluster_settings WHERE id = 1 FOR UPDATE;
    before_v := s.version;
    IF p_if_match IS NOT NULL AND s.version <> p_if_match THEN
        PERFORM cloud_raise('CL412', format('cluster settings are at version %s, not %s',
                                            s.version, p_if_match));
    END IF;
    -- down_after_seconds and fence_after_seconds are checked together:
    -- an agent must have fenced itself (3 s margin: its timer and the
    -- destroy, docs/decisions.md §28) before its host may be marked down.
    IF coalesce((p->>'fence_after_seconds')::integer, s.fence_after_seconds) + 3
       >= coalesce((p->>'down_after_seconds')::integer, s.down_after_seconds) THEN
        PERFORM cloud_raise('CL422', format(
            'fence_after_seconds (%s) + 3 must be less than down_after_seconds (%s): '
            'an agent cut off from the controllers must stop its partition_policy '
            '"stop" instances before its host is marked down and they are replaced',
            coalesce((p->>'fence_after_seconds')::integer, s.fence_after_seconds),
            coalesce((p->>'down_after_seconds')::integer, s.down_after_seconds)),
            CASE WHEN p ? 'fence_after_seconds' THEN 'fence_after_seconds'
                 ELSE 'down_after_seconds' END);
    END IF;
    -- IPAM (docs/network.md): the cluster CIDR never changes under
    -- allocated subnets (no silent renumbering); the host subnet prefix
    -- applies to subnets allocated from now on.
    IF coalesce((p->>'cluster_cidr')::cidr, s.cluster_cidr) <> s.cluster_cidr
       AND EXISTS (SELECT 1 FROM host_subnets) THEN
        PERFORM cloud_raise('CL409', format(
            'cluster_cidr cannot change from %s to %s while %s host subnets are allocated '
            'in it: addresses are never renumbered; delete the hosts first',
            s.cluster_cidr, (p->>'cluster_cidr')::cidr,
            (SELECT count(*) FROM host_subnets)));
    END IF;
    IF coalesce((p->>'host_subnet_prefix')::integer, s.host_subnet_prefix)
       < masklen(coalesce((p->>'cluster_cidr')::cidr, s.cluster_cidr)) THEN
        PERFORM cloud_raise('CL422', format(
            'host_subnet_prefix (%s) must be at least the prefix length of cluster_cidr (%s)',
            coalesce((p->>'host_subnet_prefix')::integer, s.host_subnet_prefix),
            coalesce((p->>'cluster_cidr')::cidr, s.cluster_cidr)),
            CASE WHEN p ? 'host_subnet_prefix' THEN 'host_subnet_prefix' ELSE 'cluster_cidr' END);
    END IF;
    IF coalesce((p->>'down_after_seconds')::integer, s.down_after_seconds) = s.down_after_seconds
       AND coalesce((p->>'fence_after_seconds')::integer, s.fence_after_seconds)
           = s.fence_after_seconds
       AND coalesce((p->>'cluster_cidr')::cidr, s.cluster_cidr) = s.cluster_cidr
       AND coalesce((p->>'host_subnet_prefix')::integer, s.host_subnet_prefix)
           = s.host_subnet_prefix THEN
        NULL;
    ELSE
        UPDATE cluster_settings
           SET down_after_seconds = coalesce((p->>'down_after_seconds')::integer, down_after_seconds),
               fence_after_seconds = coalesce((p->>'fence_after_seconds')::integer, fence_after_seconds),
               cluster_cidr = coalesce((p->>'cluster_cidr')::cidr, cluster_cidr),
               host_subnet_prefix = coalesce((p->>'host_subnet_prefix')::integer, host_subnet_prefix),
               version = version + 1, updated_at = now()
         WHERE id = 1 RETURNING * INTO n;
        PERFORM cloud_event('controller.settings', 'controller', NULL, 'cluster',
            'cluster settings updated: ' || concat_ws(', ',
                CASE WHEN n.down_after_seconds <> s.down_after_seconds
                     THEN format('down_after_seconds %s -> %s',
                                 s.down_after_seconds, n.down_after_seconds) END,
                CASE WHEN n.fence_after_seconds <> s.fence_after_seconds
                     THEN format('fence_after_seconds %s -> %s',
                                 s.fence_after_seconds, n.fence_after_seconds) END,
                CASE WHEN n.cluster_cidr <> s.cluster_cidr
                     THEN format('cluster_cidr %s -> %s', s.cluster_cidr, n.cluster_cidr) END,
                CASE WHEN n.host_subnet_prefix <> s.host_subnet_prefix
                     THEN format('host_subnet_prefix %s -> %s',
                                 s.host_subnet_prefix, n.host_subnet_prefix) END),
            p_actor);
        -- hosts the old settings left without a subnet get one now
        PERFORM cloud_host_subnet_alloc(h.id)
           FROM hosts h
          WHERE NOT EXISTS (SELECT 1 FROM host_subnets hs WHERE hs.host_id = h.id)
          ORDER BY h.name;
        s := n;
    END IF;
    n := s;
    n.events_max_age_seconds := coalesce((r->>'max_age_seconds')::bigint, s.events_max_age_seconds);
    n.events_max_events := coalesce((r->>'max_events')::bigint, s.events_max_events);
    n.quota_services := coalesce((q->>'services')::bigint, s.quota_services);
    n.quota_instances := coalesce((q->>'instances')::bigint, s.quota_instances);
    n.quota_images := coalesce((q->>'images')::bigint, s.quota_images);
    n.quota_tokens := coalesce((q->>'tokens')::bigint, s.quota_tokens);
    n.quota_upload_sessions := coalesce((q->>'upload_sessions')::bigint, s.quota_upload_sessions);
    n.quota_blob_bytes := coalesce((q->>'blob_bytes')::bigint, s.quota_blob_bytes);
    n.blob_gc_grace_seconds := coalesce((b->>'gc_grace_seconds')::bigint, s.blob_gc_grace_seconds);
    n.blob_min_free_bytes := coalesce((b->>'min_free_bytes')::bigint, s.blob_min_free_bytes);
    sj := cloud_settings_json(s)::jsonb;
    nj := cloud_settings_json(n)::jsonb;
    SELECT coalesce(array_agg(format('%s.%s %s -> %s', o.key, e.key, e.value,
                                     nj -> o.key -> e.key) ORDER BY o.key, e.key), '{}')
      INTO changes
      FROM jsonb_each(sj) o,
           LATERAL jsonb_each(CASE WHEN o.key IN ('events_retention', 'quotas', 'blobs')
                              THEN o.value ELSE '{}' END) e
     WHERE e.value IS DISTINCT FROM nj -> o.key -> e.key;
    IF cardinality(changes) = 0 THEN
        status := 200;
        body := cloud_settings_json(s);
        RETURN;
    END IF;
    UPDATE cluster_settings SET
           events_max_age_seconds = n.events_max_age_seconds,
           events_max_events = n.events_max_events,
           quota_services = n.quota_services, quota_instances = n.quota_instances,
           quota_images = n.quota_images, quota_tokens = n.quota_tokens,
           quota_upload_sessions = n.quota_upload_sessions,
           quota_blob_bytes = n.quota_blob_bytes,
           blob_gc_grace_seconds = n.blob_gc_grace_seconds,
           blob_min_free_bytes = n.blob_min_free_bytes,
           -- one version step per PATCH, whoever changed what
           version = CASE WHEN s.version = before_v THEN s.version + 1 ELSE s.version END,
           updated_at = now()
     WHERE id = 1 RETURNING * INTO n;
    PERFORM cloud_event('controller.settings', 'controller', NULL, 'cluster',
        'cluster settings updated: ' || array_to_string(changes, ', '), p_actor);
    status := 200;
    body := cloud_settings_json(n);
END $$;
