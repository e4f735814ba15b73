-- 0011: labels on services and instances (issue 5).
--
-- labels is a flat object of string keys to string values, shaped like
-- Kubernetes labels: key = optional DNS-subdomain prefix and "/", then a
-- name of 1..63 characters [A-Za-z0-9._-] starting and ending with a letter
-- or digit; value = empty or 1..63 such characters; at most 64 labels.
-- controller/validate.c checks bodies and names the offending label; the
-- CHECKs below are the last line.
--
-- Instances created by a service (the reconciler's cloud_rec_create, or any
-- later path) inherit the service's labels through a trigger, so no insert
-- path has to remember it; a PATCH of a service's labels relabels its live
-- instances in the same transaction, one instance.updated event each (the
-- read cache and watchers follow events).
--
-- The service JSON and the service writes are extended by wrapping the
-- definitions already present (renamed to *_pre0011) instead of copying
-- them: 0010 (written at the same time) redefines them too, and a copy
-- here would silently drop its fields. The instance JSON is copied from
-- 0009 instead, for speed (see below).

CREATE FUNCTION cloud_label_key_ok(k text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT length(k) <= 317
       AND k ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$'
       AND (position('/' IN k) = 0 OR position('/' IN k) <= 254)
$$;

CREATE FUNCTION cloud_labels_ok(l jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT l = '{}'::jsonb
        OR (jsonb_typeof(l) = 'object'
            AND (SELECT count(*) <= 64
                        AND bool_and(jsonb_typeof(e.value) = 'string'
                                     AND cloud_label_key_ok(e.key)
                                     AND (e.value #>> '{}') ~ '^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$')
                   FROM jsonb_each(l) e))
$$;

ALTER TABLE services ADD COLUMN labels jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(labels) = 'object' AND cloud_labels_ok(labels));
ALTER TABLE instances ADD COLUMN labels jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(labels) = 'object' AND cloud_labels_ok(labels));

-- A service's instance starts with the service's labels.
CREATE FUNCTION cloud_instance_inherit_labels() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.labels = '{}'::jsonb THEN
        NEW.labels := coalesce((SELECT labels FROM services WHERE id = NEW.service_id), '{}');
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER instances_inherit_labels BEFORE INSERT ON instances
    FOR EACH ROW WHEN (NEW.service_id IS NOT NULL)
    EXECUTE FUNCTION cloud_instance_inherit_labels();

-- JSON: the earlier shape with "labels" appended. One expression without
-- FROM, so PostgreSQL inlines it into the caller's query (a FROM clause
-- here made every row a separate function call: 6x slower on a cache load).
ALTER FUNCTION cloud_service_json RENAME TO cloud_service_json_pre0011;
CREATE FUNCTION cloud_service_json(s services) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT (left(cloud_service_json_pre0011(s)::text, -1) || ',"labels":'
            || s.labels::text || '}')::json
$$;

-- Instances are the many objects (a cache load builds the JSON of every
-- one), and the wrapper's text-to-json cast re-parses it: +45% over 20,000
-- rows. So the instance shape is defined whole: 0009's (0002's plus
-- config_version and ready) with labels. A later change of the instance
-- JSON starts from this one.
CREATE OR REPLACE FUNCTION cloud_instance_json(i instances) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', i.id, 'name', i.name,
        'service', (SELECT name FROM services WHERE id = i.service_id),
        'generation', i.generation, 'image', i.image,
        'resources', json_build_object('vcpus', i.vcpus, 'memory_mib', i.memory_mib,
                                       'disk_gib', i.disk_gib),
        'args', i.args, 'env', i.env, 'restart', i.restart,
        'placement', json_build_object('constraints', i.constraints,
                                       'strategy', i.strategy,
                                       'max_per_host', i.max_per_host),
        'desired_state', i.desired_state, 'state', i.state,
        'stop_signal', i.stop_signal,
        'host', (SELECT name FROM hosts WHERE id = i.host_id),
        'exit_code', i.exit_code, 'reason', i.reason,
        'pending_reason', i.pending_reason, 'restart_count', i.restart_count,
        'addresses', i.addresses, 'config_version', i.config_version,
        'ready', i.ready, 'version', i.version,
        'created_at', cloud_ts(i.created_at), 'updated_at', cloud_ts(i.updated_at),
        'started_at', cloud_ts(i.started_at), 'finished_at', cloud_ts(i.finished_at),
        'labels', i.labels)
$$;

-- Service create: the earlier create, then the labels in the same
-- transaction (before anyone can see the row).
ALTER FUNCTION cloud_service_create RENAME TO cloud_service_create_pre0011;
CREATE FUNCTION cloud_service_create(p jsonb, p_idem text, p_actor text,
                                     OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    s services;
BEGIN
    SELECT f.status, f.body INTO status, body
      FROM cloud_service_create_pre0011(p - 'labels', p_idem, p_actor) f;
    IF status = 201 AND coalesce(p->'labels', '{}'::jsonb) <> '{}'::jsonb THEN
        UPDATE services SET labels = p->'labels'
         WHERE id = body->>'id' RETURNING * INTO s;
        body := cloud_service_json(s);
    END IF;
END $$;

-- Service patch: "labels" replaces the whole set (like env). The earlier
-- patch bumps the version and appends service.updated; the live instances
-- take the new labels, each with an instance.updated event.
ALTER FUNCTION cloud_service_patch RENAME TO cloud_service_patch_pre0011;
CREATE FUNCTION cloud_service_patch(p_name text, p jsonb, p_if_match bigint, p_actor text,
                                    OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    s services;
    i instances;
BEGIN
    SELECT f.status, f.body INTO status, body
      FROM cloud_service_patch_pre0011(p_name, p, p_if_match, p_actor) f;
    IF NOT p ? 'labels' THEN
        RETURN;
    END IF;
    UPDATE services SET labels = p->'labels'
     WHERE name = p_name AND labels IS DISTINCT FROM p->'labels'
    RETURNING * INTO s;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    body := cloud_service_json(s);
    FOR i IN UPDATE instances SET labels = s.labels, version = version + 1, updated_at = now()
              WHERE service_id = s.id AND desired_state <> 'deleted'
                AND labels IS DISTINCT FROM s.labels
              RETURNING * LOOP
        PERFORM cloud_event('instance.updated', 'instance', i.id, i.name,
            format('instance %s: labels set from service %s', i.name, s.name), p_actor);
    END LOOP;
END $$;

-- One-off create: 0002's function with labels in the INSERT (a second
-- UPDATE would cost the hot path a row version).
CREATE OR REPLACE FUNCTION cloud_instance_create(p jsonb, p_idem text, p_actor text,
                                                 OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
    nid text := cloud_new_id();
    prior text;
    nm text;
BEGIN
    prior := cloud_idem_claim(p_idem, 'POST /v1/instances', nid);
    IF prior IS NOT NULL THEN
        SELECT * INTO i FROM instances WHERE id = prior;
        IF NOT FOUND THEN
            PERFORM cloud_raise('CL409', format('idempotency key %s created an instance that no longer exists', p_idem));
        END IF;
        status := 200;
        body := cloud_instance_json(i);
        RETURN;
    END IF;
    PERFORM cloud_image_require(p->>'image');
    nm := coalesce(p->>'name', 'run-' || substr(nid, 1, 12));
    IF EXISTS (SELECT 1 FROM instances WHERE name = nm AND desired_state <> 'deleted') THEN
        PERFORM cloud_raise('CL409', format('instance %s already exists', nm), 'name');
    END IF;
    INSERT INTO instances (id, name, image, vcpus, memory_mib, disk_gib, args, env,
                           restart, constraints, strategy, max_per_host, labels)
    VALUES (nid, nm, p->>'image',
            (p#>>'{resources,vcpus}')::integer, (p#>>'{resources,memory_mib}')::integer,
            (p#>>'{resources,disk_gib}')::integer, p->'args', p->'env', p->>'restart',
            p#>'{placement,constraints}', p#>>'{placement,strategy}',
            (p#>>'{placement,max_per_host}')::integer, coalesce(p->'labels', '{}'))
    RETURNING * INTO i;
    PERFORM cloud_event('instance.created', 'instance', i.id, i.name,
        format('instance %s created from %s', i.name, i.image), p_actor);
    status := 201;
    body := cloud_instance_json(i);
END $$;

-- The bulk path (0007) with labels.
CREATE OR REPLACE FUNCTION cloud_instance_create_many(p jsonb, p_actor text)
RETURNS TABLE (idx integer, status integer, body json, err_state text,
               err_message text, err_field text, event_id bigint)
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p) x
                WHERE (cloud_image_find(x->>'image')).id IS NULL) THEN
        PERFORM cloud_raise('CL422', 'an image of the batch was not found', 'image');
    END IF;
    PERFORM pg_advisory_xact_lock(726200101);
    RETURN QUERY
    WITH items AS (
        SELECT (t.o - 1)::integer AS i, t.x AS b, cloud_new_id() AS nid
          FROM jsonb_array_elements(p) WITH ORDINALITY AS t(x, o)
    ), ins AS (
        INSERT INTO instances (id, name, image, vcpus, memory_mib, disk_gib, args, env,
                               restart, constraints, strategy, max_per_host, labels)
        SELECT nid, coalesce(b->>'name', 'run-' || substr(nid, 1, 12)), b->>'image',
               (b#>>'{resources,vcpus}')::integer, (b#>>'{resources,memory_mib}')::integer,
               (b#>>'{resources,disk_gib}')::integer, b->'args', b->'env', b->>'restart',
               b#>'{placement,constraints}', b#>>'{placement,strategy}',
               (b#>>'{placement,max_per_host}')::integer, coalesce(b->'labels', '{}')
          FROM items ORDER BY i
        RETURNING *
    ), ev AS (
        INSERT INTO events (type, object, object_id, name, message, actor)
        SELECT 'instance.created', 'instance', ins.id, ins.name,
               format('instance %s created from %s', ins.name, ins.image), p_actor
          FROM ins
        RETURNING events.id AS eid, events.object_id AS oid
    )
    SELECT items.i, 201, cloud_instance_json(ins::instances), NULL::text, NULL::text,
           NULL::text, ev.eid
      FROM items
      JOIN ins ON ins.id = items.nid
      JOIN ev ON ev.oid = ins.id
     ORDER BY items.i;
END $$;
