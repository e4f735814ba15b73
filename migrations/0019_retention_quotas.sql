-- 0019: event retention, quotas and blob garbage collection (issue 11,
-- items 5 and 6; docs/decisions.md "Event retention and the low-water
-- mark", "Quotas and blob GC").
--
-- Settings: new columns of cluster_settings, shown and patched as three
-- objects (events_retention, quotas, blobs). cloud_settings_json and
-- cloud_settings_patch_unlocked are extended by renaming the present ones
-- (..._pre0019) and wrapping them, so settings other migrations add keep
-- working whichever order they were written in (decisions.md §9).
--
-- Events: cloud_events_prune (the leader's retention timer) deletes at most
-- a batch of the oldest events per call, never the newest one, and raises
-- the low-water mark events_pruned.low_water to the newest id it deleted.
-- It takes no advisory lock: deleting old rows conflicts with no writer
-- (decisions.md §11). cloud_event_page serves lists and watch catch-ups
-- and answers CL410 (410 expired) for since < low_water.
--
-- Quotas: a counter row per quota in quota_usage, kept by triggers on the
-- rows that count, so every path that creates an object (API, reconciler,
-- bulk create, tokencmd) is counted in the transaction that creates it.
-- The trigger raises CLQTA (409 quota) when a create passes the quota. The
-- counter row's UPDATE serialises concurrent creates (they already hold
-- the event lock, 0015), so two creates cannot both take the last slot.

-- ---- settings --------------------------------------------------------------

ALTER TABLE cluster_settings
    ADD COLUMN events_max_age_seconds bigint NOT NULL DEFAULT 604800
        CHECK (events_max_age_seconds BETWEEN 60 AND 315360000),
    ADD COLUMN events_max_events bigint NOT NULL DEFAULT 1000000
        CHECK (events_max_events BETWEEN 1 AND 1000000000),
    ADD COLUMN quota_services bigint NOT NULL DEFAULT 10000
        CHECK (quota_services BETWEEN 0 AND 1000000000),
    ADD COLUMN quota_instances bigint NOT NULL DEFAULT 100000
        CHECK (quota_instances BETWEEN 0 AND 1000000000),
    ADD COLUMN quota_images bigint NOT NULL DEFAULT 10000
        CHECK (quota_images BETWEEN 0 AND 1000000000),
    ADD COLUMN quota_tokens bigint NOT NULL DEFAULT 10000
        CHECK (quota_tokens BETWEEN 0 AND 1000000000),
    ADD COLUMN quota_upload_sessions bigint NOT NULL DEFAULT 64
        CHECK (quota_upload_sessions BETWEEN 0 AND 4096),
    ADD COLUMN quota_blob_bytes bigint NOT NULL DEFAULT 1099511627776
        CHECK (quota_blob_bytes BETWEEN 0 AND 1152921504606846976),
    ADD COLUMN blob_gc_grace_seconds bigint NOT NULL DEFAULT 86400
        CHECK (blob_gc_grace_seconds BETWEEN 1 AND 315360000),
    ADD COLUMN blob_min_free_bytes bigint NOT NULL DEFAULT 1073741824
        CHECK (blob_min_free_bytes BETWEEN 0 AND 1152921504606846976);

ALTER FUNCTION cloud_settings_json(cluster_settings) RENAME TO cloud_settings_json_pre0019;
CREATE FUNCTION cloud_settings_json(s cluster_settings) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT (cloud_settings_json_pre0019(s)::jsonb || jsonb_build_object(
        'events_retention', jsonb_build_object(
            'max_age_seconds', s.events_max_age_seconds,
            'max_events', s.events_max_events),
        'quotas', jsonb_build_object(
            'services', s.quota_services, 'instances', s.quota_instances,
            'images', s.quota_images, 'tokens', s.quota_tokens,
            'upload_sessions', s.quota_upload_sessions,
            'blob_bytes', s.quota_blob_bytes),
        'blobs', jsonb_build_object(
            'gc_grace_seconds', s.blob_gc_grace_seconds,
            'min_free_bytes', s.blob_min_free_bytes)))::json
$$;

-- p: the merge patch, validated by the controller (api_cluster.c); the
-- CHECKs are the last line. The keys this migration owns are applied here,
-- the rest by the function it wraps (which also checks If-Match).
ALTER FUNCTION cloud_settings_patch_unlocked(jsonb, bigint, text)
    RENAME TO cloud_settings_patch_unlocked_pre0019;
CREATE FUNCTION cloud_settings_patch_unlocked(p jsonb, p_if_match bigint, p_actor text,
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
    SELECT version INTO before_v FROM cluster_settings WHERE id = 1 FOR UPDATE;
    PERFORM cloud_settings_patch_unlocked_pre0019(
        p - 'events_retention' - 'quotas' - 'blobs', p_if_match, p_actor);
    SELECT * INTO s FROM cluster_settings WHERE id = 1;
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

-- ---- event retention -------------------------------------------------------

-- One row: the id of the newest event pruned (0: none). Every event with
-- a higher id is still in the table, so a reader that has seen id N misses
-- nothing iff N >= low_water.
CREATE TABLE events_pruned (
    id          integer PRIMARY KEY CHECK (id = 1),
    low_water   bigint NOT NULL DEFAULT 0 CHECK (low_water >= 0),
    pruned_at   timestamptz
);
INSERT INTO events_pruned (id) VALUES (1);

-- Deletes up to p_batch of the oldest events that are older than
-- max_age_seconds or not among the newest max_events, as one contiguous
-- prefix by id (so everything above the mark is kept), never the newest
-- event (so a reader that gets no rows after its position knows nothing
-- above it was pruned). deleted = p_batch: call again.
CREATE FUNCTION cloud_events_prune(p_batch integer, OUT deleted integer,
                                   OUT low_water bigint)
LANGUAGE plpgsql AS $$
DECLARE
    st cluster_settings;
    top bigint;
    cut bigint;
BEGIN
    deleted := 0;
    SELECT * INTO st FROM cluster_settings WHERE id = 1;
    SELECT w.low_water INTO low_water FROM events_pruned w WHERE w.id = 1;
    SELECT max(id) INTO top FROM events;
    IF top IS NULL THEN
        RETURN;
    END IF;
    -- The common case, every 2 s: the oldest event is to be kept, so
    -- nothing is (one index probe instead of reading a batch).
    IF NOT EXISTS (SELECT 1 FROM (SELECT e.id, e.time FROM events e ORDER BY e.id LIMIT 1) f
                    WHERE f.id < top
                      AND (f.time < now() - make_interval(secs => st.events_max_age_seconds)
                           OR f.id <= top - st.events_max_events)) THEN
        RETURN;
    END IF;
    WITH c AS (SELECT e.id, (e.time < now() - make_interval(secs => st.events_max_age_seconds)
                             OR e.id <= top - st.events_max_events) AS old
                 FROM events e ORDER BY e.id LIMIT p_batch),
         y AS (SELECT min(c.id) AS id FROM c WHERE NOT c.old)
    SELECT max(c.id) INTO cut FROM c, y
     WHERE c.old AND (y.id IS NULL OR c.id < y.id) AND c.id < top;
    IF cut IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM events WHERE id <= cut;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    UPDATE events_pruned w SET low_water = greatest(w.low_water, cut), pruned_at = now()
     WHERE w.id = 1 RETURNING w.low_water INTO low_water;
END $$;

-- A page of events after p_since (NULL: from the oldest kept), or CL410
-- when events after p_since were pruned. STABLE: the mark and the rows
-- are read in one snapshot, so a prune committing in between cannot make
-- a page skip rows without the 410.
CREATE FUNCTION cloud_event_page(p_since bigint, p_object text, p_type text,
                                 p_limit integer)
RETURNS TABLE (id bigint, type text, object text, json json, object_id text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    lw bigint;
BEGIN
    IF p_since IS NOT NULL THEN
        SELECT w.low_water INTO lw FROM events_pruned w WHERE w.id = 1;
        IF p_since < lw THEN
            PERFORM cloud_raise('CL410', format('events after %s are no longer kept: '
                'events up to %s were pruned (cluster setting events_retention); '
                'list again without since and watch from there', p_since, lw), 'since');
        END IF;
    END IF;
    RETURN QUERY
        SELECT e.id, e.type, e.object, cloud_event_json(e), e.object_id
          FROM events e
         WHERE e.id > coalesce(p_since, 0)
           AND (p_object IS NULL OR e.object = p_object)
           AND (p_type IS NULL OR e.type = p_type)
         ORDER BY e.id LIMIT p_limit;
END $$;

-- ---- quotas ----------------------------------------------------------------

CREATE TABLE quota_usage (
    kind  text PRIMARY KEY CHECK (kind IN ('services', 'instances', 'images',
                                           'tokens', 'blob_bytes')),
    used  bigint NOT NULL
);
INSERT INTO quota_usage (kind, used)
SELECT 'services', count(*) FROM services
UNION ALL
SELECT 'instances', count(*) FROM instances
 WHERE service_id IS NULL AND desired_state <> 'deleted'
UNION ALL
SELECT 'images', count(*) FROM images
UNION ALL
SELECT 'tokens', count(*) FROM tokens WHERE revoked_at IS NULL
UNION ALL
SELECT 'blob_bytes', coalesce(sum(size), 0) FROM blobs;

-- Adds d to a quota's counter; a positive d past the quota is refused.
CREATE FUNCTION cloud_quota_take(p_kind text, d bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    now_used bigint;
    lim bigint;
BEGIN
    UPDATE quota_usage SET used = used + d WHERE kind = p_kind
    RETURNING used INTO now_used;
    IF d <= 0 THEN
        RETURN;
    END IF;
    SELECT CASE p_kind WHEN 'services' THEN quota_services
                       WHEN 'instances' THEN quota_instances
                       WHEN 'images' THEN quota_images
                       WHEN 'tokens' THEN quota_tokens
                       ELSE quota_blob_bytes END
      INTO lim FROM cluster_settings WHERE id = 1;
    IF now_used > lim THEN
        PERFORM cloud_raise('CLQTA', CASE p_kind
            WHEN 'blob_bytes' THEN format('quota blob_bytes exceeded: the blobs would take %s bytes, '
                'the quota is %s; delete images (unreferenced blobs are collected) '
                'or raise quotas.blob_bytes in the cluster settings', now_used, lim)
            WHEN 'instances' THEN format('quota instances exceeded: %s one-off instances exist, '
                'the quota is %s; delete some or raise quotas.instances in the cluster settings',
                now_used - d, lim)
            ELSE format('quota %s exceeded: %s %s exist, the quota is %s; delete some '
                'or raise quotas.%s in the cluster settings', p_kind, now_used - d, p_kind,
                lim, p_kind) END,
            'quotas.' || p_kind);
    END IF;
END $$;

CREATE FUNCTION cloud_quota_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    kind text := TG_ARGV[0];
    d bigint := 0;
BEGIN
    IF kind = 'blob_bytes' THEN
        d := CASE TG_OP WHEN 'INSERT' THEN NEW.size WHEN 'DELETE' THEN -OLD.size
                        ELSE NEW.size - OLD.size END;
    ELSIF kind = 'instances' THEN
        d := CASE WHEN TG_OP <> 'DELETE' AND NEW.service_id IS NULL
                       AND NEW.desired_state <> 'deleted' THEN 1 ELSE 0 END
           - CASE WHEN TG_OP <> 'INSERT' AND OLD.service_id IS NULL
                       AND OLD.desired_state <> 'deleted' THEN 1 ELSE 0 END;
    ELSIF kind = 'tokens' THEN
        d := CASE WHEN TG_OP <> 'DELETE' AND NEW.revoked_at IS NULL THEN 1 ELSE 0 END
           - CASE WHEN TG_OP <> 'INSERT' AND OLD.revoked_at IS NULL THEN 1 ELSE 0 END;
    ELSE
        d := CASE TG_OP WHEN 'INSERT' THEN 1 WHEN 'DELETE' THEN -1 ELSE 0 END;
    END IF;
    IF d <> 0 THEN
        PERFORM cloud_quota_take(kind, d);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER services_quota AFTER INSERT OR DELETE ON services
    FOR EACH ROW EXECUTE FUNCTION cloud_quota_rows('services');
CREATE TRIGGER images_quota AFTER INSERT OR DELETE ON images
    FOR EACH ROW EXECUTE FUNCTION cloud_quota_rows('images');
CREATE TRIGGER blobs_quota AFTER INSERT OR DELETE OR UPDATE OF size ON blobs
    FOR EACH ROW EXECUTE FUNCTION cloud_quota_rows('blob_bytes');
CREATE TRIGGER tokens_quota_ins AFTER INSERT OR DELETE ON tokens
    FOR EACH ROW EXECUTE FUNCTION cloud_quota_rows('tokens');
CREATE TRIGGER tokens_quota_upd AFTER UPDATE OF revoked_at ON tokens
    FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at)
    EXECUTE FUNCTION cloud_quota_rows('tokens');
-- Only one-off instances count (a service's replicas are bounded by the
-- service's replicas); the WHEN clauses keep the agents' status updates
-- and the reconciler's service instances free of any function call.
-- Inserts count once per statement: a bulk create of 1,000 one-off
-- instances is one counter update, not 1,000.
CREATE FUNCTION cloud_quota_instances_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d bigint;
BEGIN
    SELECT count(*) INTO d FROM inserted
     WHERE service_id IS NULL AND desired_state <> 'deleted';
    IF d > 0 THEN
        PERFORM cloud_quota_take('instances', d);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER instances_quota_ins AFTER INSERT ON instances
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION cloud_quota_instances_inserted();
CREATE TRIGGER instances_quota_del AFTER DELETE ON instances
    FOR EACH ROW WHEN (OLD.service_id IS NULL AND OLD.desired_state <> 'deleted')
    EXECUTE FUNCTION cloud_quota_rows('instances');
CREATE TRIGGER instances_quota_upd AFTER UPDATE OF desired_state ON instances
    FOR EACH ROW WHEN (NEW.service_id IS NULL
                       AND (OLD.desired_state = 'deleted') <> (NEW.desired_state = 'deleted'))
    EXECUTE FUNCTION cloud_quota_rows('instances');

-- ---- blobs -----------------------------------------------------------------

-- A blob uploaded again is fresh again: its GC grace starts over, so an
-- image created right after a re-upload cannot lose it to the collector.
CREATE OR REPLACE FUNCTION cloud_blob_add(p_digest text, p_size bigint, p_actor text,
                                          OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO blobs (digest, size) VALUES (p_digest, p_size)
    ON CONFLICT (digest) DO UPDATE SET created_at = now();
    status := 201;
    body := json_build_object('digest', p_digest, 'size', p_size);
END $$;

-- Deletes blobs no image references that were uploaded more than
-- blobs.gc_grace_seconds ago, at most p_batch, and returns their digests
-- (the caller removes the files after this commits). The event lock
-- serialises it with image creates, which hold it from their start (0015):
-- an image create either committed before (its reference is seen) or runs
-- after (and finds the blob gone: 422 "upload it first"). The images
-- foreign keys are the last line.
CREATE FUNCTION cloud_blob_gc(p_batch integer)
RETURNS TABLE (digest text, size bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    RETURN QUERY
    DELETE FROM blobs b
     WHERE b.digest IN (
        SELECT x.digest FROM blobs x, cluster_settings st
         WHERE st.id = 1
           AND x.created_at < now() - make_interval(secs => st.blob_gc_grace_seconds)
           AND NOT EXISTS (SELECT 1 FROM images i
                            WHERE i.kernel_digest = x.digest OR i.initrd_digest = x.digest
                               OR i.disk_digest = x.digest)
         ORDER BY x.created_at LIMIT p_batch)
    RETURNING b.digest, b.size;
END $$;
