-- 0002: the API's write transactions and the JSON shape of every object.
--
-- Each API write is one function call: one round trip, one transaction, and
-- the event append (and so the NOTIFY) cannot be forgotten by a caller. The
-- controller validates bodies before calling; the tables' CHECKs are the last
-- line. Errors use SQLSTATEs CL404/CL409/CL412/CL422 that the controller maps
-- to HTTP statuses; COLUMN carries the offending JSON field for CL422.
-- See docs/decisions.md "Writes are SQL functions".

CREATE FUNCTION cloud_ts(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

CREATE FUNCTION cloud_new_id() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT substr(replace(gen_random_uuid()::text, '-', ''), 1, 16)
$$;

CREATE FUNCTION cloud_raise(p_code text, p_message text, p_field text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = p_code, MESSAGE = p_message,
                          COLUMN = coalesce(p_field, '');
END $$;

-- Appends an event. The advisory lock makes id order equal commit order
-- (every writer appends its event last, then commits), so a watcher that has
-- seen id N never later finds a committed id below N.
CREATE FUNCTION cloud_event(p_type text, p_object text, p_object_id text,
                            p_name text, p_message text, p_actor text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    eid bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    INSERT INTO events (type, object, object_id, name, message, actor)
    VALUES (p_type, p_object, p_object_id, p_name, p_message, coalesce(p_actor, 'api'))
    RETURNING id INTO eid;
    -- The batch reports each item's last event id, so the controller's
    -- cache can skip re-reading what it just wrote (cache.c).
    PERFORM set_config('cloud.last_event', eid::text, true);
    RETURN eid;
END $$;

CREATE FUNCTION cloud_event_json(e events) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', e.id, 'time', cloud_ts(e.time), 'type', e.type,
        'object', e.object, 'object_id', e.object_id, 'name', e.name,
        'message', e.message, 'actor', e.actor)
$$;

CREATE FUNCTION cloud_image_json(i images) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', i.id, 'name', i.name, 'tag', i.tag,
        'ref', i.name || ':' || i.tag, 'kind', i.kind,
        'kernel_digest', i.kernel_digest, 'initrd_digest', i.initrd_digest,
        'disk_digest', i.disk_digest, 'cmdline', i.cmdline, 'size', i.size,
        'created_at', cloud_ts(i.created_at))
$$;

-- Resolves an image reference: name:tag, name (tag latest), an image id, or
-- a blob digest. NULL when there is none.
CREATE FUNCTION cloud_image_find(p_ref text) RETURNS images
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r images;
BEGIN
    IF length(p_ref) = 71 AND p_ref ~ '^sha256:[0-9a-f]*$' THEN
        SELECT * INTO r FROM images
         WHERE kernel_digest = p_ref OR disk_digest = p_ref
         ORDER BY created_at DESC LIMIT 1;
    ELSIF position(':' IN p_ref) > 0 THEN
        SELECT * INTO r FROM images
         WHERE name = split_part(p_ref, ':', 1)
           AND tag = substr(p_ref, position(':' IN p_ref) + 1);
    ELSE
        SELECT * INTO r FROM images WHERE name = p_ref AND tag = 'latest';
        IF NOT FOUND AND length(p_ref) = 16 AND p_ref ~ '^[0-9a-f]*$' THEN
            SELECT * INTO r FROM images WHERE id = p_ref;
        END IF;
    END IF;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN r;
END $$;

CREATE FUNCTION cloud_image_require(p_ref text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF (cloud_image_find(p_ref)).id IS NULL THEN
        PERFORM cloud_raise('CL422', format('image %s not found; push it first (cloudctl images push)', p_ref), 'image');
    END IF;
END $$;

CREATE FUNCTION cloud_host_json(h hosts) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', h.id, 'name', h.name, 'address', h.address,
        'state', h.state, 'labels', h.labels,
        'capacity', json_build_object('vcpus', h.cap_vcpus,
                                      'memory_mib', h.cap_memory_mib,
                                      'disk_gib', h.cap_disk_gib),
        'allocated', json_build_object('vcpus', coalesce(a.vcpus, 0),
                                       'memory_mib', coalesce(a.memory_mib, 0),
                                       'disk_gib', coalesce(a.disk_gib, 0)),
        'hypervisor', h.hypervisor, 'arch', h.arch,
        'session_epoch', h.session_epoch, 'last_seen', cloud_ts(h.last_seen),
        'instances', coalesce(a.n, 0), 'version', h.version,
        'created_at', cloud_ts(h.created_at), 'updated_at', cloud_ts(h.updated_at))
      FROM (SELECT sum(vcpus) AS vcpus, sum(memory_mib) AS memory_mib,
                   sum(disk_gib) AS disk_gib, count(*) AS n
              FROM instances
             WHERE host_id = h.id
               AND state NOT IN ('exited', 'failed', 'lost')) a
$$;

CREATE FUNCTION cloud_service_json(s services) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', s.id, 'name', s.name, 'image', s.image,
        'resources', json_build_object('vcpus', s.vcpus, 'memory_mib', s.memory_mib,
                                       'disk_gib', s.disk_gib),
        'args', s.args, 'env', s.env, 'ports', s.ports, 'restart', s.restart,
        'placement', json_build_object('constraints', s.constraints,
                                       'strategy', s.strategy,
                                       'max_per_host', s.max_per_host),
        'partition_policy', s.partition_policy, 'links', s.links,
        'replicas', s.replicas,
        'rollout', json_build_object('max_unavailable', s.max_unavailable,
                                     'max_surge', s.max_surge),
        'generation', s.generation, 'state', s.state, 'version', s.version,
        'created_at', cloud_ts(s.created_at), 'updated_at', cloud_ts(s.updated_at))
$$;

CREATE FUNCTION cloud_instance_json(i instances) RETURNS json
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
        'addresses', i.addresses, 'version', i.version,
        'created_at', cloud_ts(i.created_at), 'updated_at', cloud_ts(i.updated_at),
        'started_at', cloud_ts(i.started_at), 'finished_at', cloud_ts(i.finished_at))
$$;

-- Claims an idempotency key for a new object. Returns the id of the object
-- an earlier request created with the key, or NULL when the key is new. A
-- concurrent request with the same key waits on the key's row, then sees it.
CREATE FUNCTION cloud_idem_claim(p_key text, p_route text, p_new_id text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    prior idempotency_keys;
BEGIN
    IF p_key IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        INSERT INTO idempotency_keys (key, route, object_id) VALUES (p_key, p_route, p_new_id);
        RETURN NULL;
    EXCEPTION WHEN unique_violation THEN
        SELECT * INTO prior FROM idempotency_keys WHERE key = p_key;
        IF prior.route <> p_route THEN
            PERFORM cloud_raise('CL409', format('idempotency key %s was already used on %s', p_key, prior.route));
        END IF;
        RETURN prior.object_id;
    END;
END $$;

CREATE FUNCTION cloud_service_create(p jsonb, p_idem text, p_actor text,
                                     OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    s services;
    nid text := cloud_new_id();
    prior text;
BEGIN
    prior := cloud_idem_claim(p_idem, 'POST /v1/services', nid);
    IF prior IS NOT NULL THEN
        SELECT * INTO s FROM services WHERE id = prior;
        IF NOT FOUND THEN
            PERFORM cloud_raise('CL409', format('idempotency key %s created a service that no longer exists', p_idem));
        END IF;
        status := 200;
        body := cloud_service_json(s);
        RETURN;
    END IF;
    PERFORM cloud_image_require(p->>'image');
    IF EXISTS (SELECT 1 FROM services WHERE name = p->>'name') THEN
        PERFORM cloud_raise('CL409', format('service %s already exists', p->>'name'), 'name');
    END IF;
    BEGIN
        INSERT INTO services (id, name, image, vcpus, memory_mib, disk_gib, args, env,
                              ports, restart, constraints, strategy, max_per_host,
                              partition_policy, links, replicas, max_unavailable, max_surge)
        VALUES (nid, p->>'name', p->>'image',
                (p#>>'{resources,vcpus}')::integer, (p#>>'{resources,memory_mib}')::integer,
                (p#>>'{resources,disk_gib}')::integer, p->'args', p->'env', p->'ports',
                p->>'restart', p#>'{placement,constraints}', p#>>'{placement,strategy}',
                (p#>>'{placement,max_per_host}')::integer, p->>'partition_policy',
                p->'links', (p->>'replicas')::integer,
                (p#>>'{rollout,max_unavailable}')::integer,
                (p#>>'{rollout,max_surge}')::integer)
        RETURNING * INTO s;
    EXCEPTION WHEN unique_violation THEN
        PERFORM cloud_raise('CL409', format('service %s already exists', p->>'name'), 'name');
    END;
    PERFORM cloud_event('service.created', 'service', s.id, s.name,
        format('service %s created: %s replicas of %s', s.name, s.replicas, s.image), p_actor);
    status := 201;
    body := cloud_service_json(s);
END $$;

CREATE FUNCTION cloud_service_lock(p_name text, p_if_match bigint) RETURNS services
LANGUAGE plpgsql AS $$
DECLARE
    s services;
BEGIN
    SELECT * INTO s FROM services WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('service %s not found', p_name));
    END IF;
    IF p_if_match IS NOT NULL AND s.version <> p_if_match THEN
        PERFORM cloud_raise('CL412', format('service %s is at version %s, not %s', p_name, s.version, p_if_match));
    END IF;
    RETURN s;
END $$;

CREATE FUNCTION cloud_service_patch(p_name text, p jsonb, p_if_match bigint, p_actor text,
                                    OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    s services;
    n services;
    changes text[] := '{}';
BEGIN
    s := cloud_service_lock(p_name, p_if_match);
    IF p = '{}'::jsonb THEN
        -- An empty merge patch changes nothing: no new version, no event.
        status := 200;
        body := cloud_service_json(s);
        RETURN;
    END IF;
    IF s.state = 'deleting' THEN
        PERFORM cloud_raise('CL409', format('service %s is being deleted', p_name));
    END IF;
    IF p ? 'image' THEN
        PERFORM cloud_image_require(p->>'image');
    END IF;
    UPDATE services SET
        image = coalesce(p->>'image', image),
        vcpus = coalesce((p#>>'{resources,vcpus}')::integer, vcpus),
        memory_mib = coalesce((p#>>'{resources,memory_mib}')::integer, memory_mib),
        disk_gib = coalesce((p#>>'{resources,disk_gib}')::integer, disk_gib),
        args = coalesce(p->'args', args),
        env = coalesce(p->'env', env),
        ports = coalesce(p->'ports', ports),
        restart = coalesce(p->>'restart', restart),
        constraints = coalesce(p#>'{placement,constraints}', constraints),
        strategy = coalesce(p#>>'{placement,strategy}', strategy),
        max_per_host = coalesce((p#>>'{placement,max_per_host}')::integer, max_per_host),
        partition_policy = coalesce(p->>'partition_policy', partition_policy),
        links = coalesce(p->'links', links),
        replicas = coalesce((p->>'replicas')::integer, replicas),
        max_unavailable = coalesce((p#>>'{rollout,max_unavailable}')::integer, max_unavailable),
        max_surge = coalesce((p#>>'{rollout,max_surge}')::integer, max_surge),
        version = version + 1,
        updated_at = now()
    WHERE id = s.id
    RETURNING * INTO n;
    -- A change of what runs inside the instance is a new generation; the
    -- reconciler rolls instances over to it.
    IF (n.image, n.vcpus, n.memory_mib, n.disk_gib, n.args, n.env, n.ports)
       IS DISTINCT FROM (s.image, s.vcpus, s.memory_mib, s.disk_gib, s.args, s.env, s.ports) THEN
        UPDATE services SET generation = generation + 1 WHERE id = n.id RETURNING * INTO n;
        changes := changes || format('generation %s -> %s', s.generation, n.generation);
    END IF;
    IF n.replicas <> s.replicas THEN
        changes := changes || format('replicas %s -> %s', s.replicas, n.replicas);
    END IF;
    IF n.image <> s.image THEN
        changes := changes || format('image %s -> %s', s.image, n.image);
    END IF;
    PERFORM cloud_event('service.updated', 'service', n.id, n.name,
        format('service %s updated%s', n.name,
               CASE WHEN cardinality(changes) > 0
                    THEN ': ' || array_to_string(changes, ', ') ELSE '' END), p_actor);
    status := 200;
    body := cloud_service_json(n);
END $$;

CREATE FUNCTION cloud_service_delete(p_name text, p_if_match bigint, p_actor text,
                                     OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    s services;
    i instances;
BEGIN
    s := cloud_service_lock(p_name, p_if_match);
    -- Instances that never reached a host, or have finished, hold nothing
    -- and go now; the others are asked to stop. Each change is an event.
    FOR i IN DELETE FROM instances
              WHERE service_id = s.id
                AND (host_id IS NULL OR state IN ('exited', 'failed', 'lost'))
              RETURNING * LOOP
        PERFORM cloud_event('instance.deleted', 'instance', i.id, i.name,
            format('instance %s deleted with service %s', i.name, s.name), p_actor);
    END LOOP;
    FOR i IN UPDATE instances SET desired_state = 'deleted',
                                  stop_signal = coalesce(stop_signal, 'TERM'),
                                  version = version + 1, updated_at = now()
              WHERE service_id = s.id AND desired_state <> 'deleted'
              RETURNING * LOOP
        PERFORM cloud_event('instance.deleting', 'instance', i.id, i.name,
            format('instance %s: deleting with service %s', i.name, s.name), p_actor);
    END LOOP;
    IF EXISTS (SELECT 1 FROM instances WHERE service_id = s.id) THEN
        UPDATE services SET state = 'deleting', version = version + 1, updated_at = now()
         WHERE id = s.id RETURNING * INTO s;
        PERFORM cloud_event('service.deleting', 'service', s.id, s.name,
            format('service %s: deleting, waiting for its instances to stop', s.name), p_actor);
        status := 202;
        body := cloud_service_json(s);
    ELSE
        DELETE FROM services WHERE id = s.id;
        PERFORM cloud_event('service.deleted', 'service', s.id, s.name,
            format('service %s deleted', s.name), p_actor);
        status := 200;
        body := json_build_object('deleted', true, 'id', s.id, 'name', s.name);
    END IF;
END $$;

-- Resolves an instance reference: id, live name, name, or a unique id prefix
-- of at least 4 characters.
CREATE FUNCTION cloud_instance_resolve(p_ref text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r text;
    n integer;
BEGIN
    SELECT id INTO r FROM instances WHERE id = p_ref;
    IF FOUND THEN
        RETURN r;
    END IF;
    SELECT id INTO r FROM instances WHERE name = p_ref
     ORDER BY (desired_state = 'deleted'), created_at DESC LIMIT 1;
    IF FOUND THEN
        RETURN r;
    END IF;
    IF length(p_ref) BETWEEN 4 AND 15 AND p_ref ~ '^[0-9a-f]*$' THEN
        -- Ids are lower-case hex in the "C" collation, so every id with
        -- this prefix sorts in [prefix, prefix || 'g').
        SELECT count(*), min(id) INTO n, r
          FROM (SELECT id FROM instances
                 WHERE id >= p_ref AND id < (p_ref || 'g') LIMIT 2) x;
        IF n = 1 THEN
            RETURN r;
        ELSIF n > 1 THEN
            PERFORM cloud_raise('CL409', format('instance prefix %s is ambiguous; give more characters', p_ref));
        END IF;
    END IF;
    PERFORM cloud_raise('CL404', format('instance %s not found', p_ref));
    RETURN NULL;
END $$;

CREATE FUNCTION cloud_instance_lock(p_ref text, p_if_match bigint) RETURNS instances
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    SELECT * INTO i FROM instances WHERE id = cloud_instance_resolve(p_ref) FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('instance %s not found', p_ref));
    END IF;
    IF p_if_match IS NOT NULL AND i.version <> p_if_match THEN
        PERFORM cloud_raise('CL412', format('instance %s is at version %s, not %s', i.name, i.version, p_if_match));
    END IF;
    RETURN i;
END $$;

CREATE FUNCTION cloud_instance_create(p jsonb, p_idem text, p_actor text,
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
    nm := coalesce(p->>'name', 'run-' || substr(nid, 1, 8));
    -- A check, not an exception block: a subtransaction per create costs
    -- more than the whole insert. A concurrent twin still hits the unique
    -- index (23505, answered 409).
    IF EXISTS (SELECT 1 FROM instances WHERE name = nm AND desired_state <> 'deleted') THEN
        PERFORM cloud_raise('CL409', format('instance %s already exists', nm), 'name');
    END IF;
    INSERT INTO instances (id, name, image, vcpus, memory_mib, disk_gib, args, env,
                           restart, constraints, strategy, max_per_host)
    VALUES (nid, nm, p->>'image',
            (p#>>'{resources,vcpus}')::integer, (p#>>'{resources,memory_mib}')::integer,
            (p#>>'{resources,disk_gib}')::integer, p->'args', p->'env', p->>'restart',
            p#>'{placement,constraints}', p#>>'{placement,strategy}',
            (p#>>'{placement,max_per_host}')::integer)
    RETURNING * INTO i;
    PERFORM cloud_event('instance.created', 'instance', i.id, i.name,
        format('instance %s created from %s', i.name, i.image), p_actor);
    status := 201;
    body := cloud_instance_json(i);
END $$;

CREATE FUNCTION cloud_instance_kill(p_ref text, p_signal text, p_if_match bigint,
                                    p_actor text, OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    i := cloud_instance_lock(p_ref, p_if_match);
    IF i.state IN ('exited', 'failed', 'lost') THEN
        PERFORM cloud_raise('CL409', format('instance %s is not running (state %s)', i.name, i.state));
    END IF;
    IF i.desired_state = 'deleted' THEN
        PERFORM cloud_raise('CL409', format('instance %s is being deleted', i.name));
    END IF;
    IF i.host_id IS NULL THEN
        -- Nothing runs yet: the process ends here, as a signal would end it.
        UPDATE instances SET state = 'exited', desired_state = 'stopped',
               stop_signal = p_signal,
               exit_code = CASE p_signal WHEN 'KILL' THEN 137 ELSE 143 END,
               reason = format('killed by signal %s before it was placed', p_signal),
               finished_at = now(), version = version + 1, updated_at = now()
         WHERE id = i.id RETURNING * INTO i;
    ELSE
        UPDATE instances SET desired_state = 'stopped', stop_signal = p_signal,
               version = version + 1, updated_at = now()
         WHERE id = i.id RETURNING * INTO i;
    END IF;
    PERFORM cloud_event('instance.killed', 'instance', i.id, i.name,
        format('instance %s: kill requested with signal %s', i.name, p_signal), p_actor);
    status := 202;
    body := cloud_instance_json(i);
END $$;

CREATE FUNCTION cloud_instance_delete(p_ref text, p_if_match bigint, p_actor text,
                                      OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    i := cloud_instance_lock(p_ref, p_if_match);
    IF i.host_id IS NULL OR i.state IN ('exited', 'failed', 'lost') THEN
        DELETE FROM instances WHERE id = i.id;
        PERFORM cloud_event('instance.deleted', 'instance', i.id, i.name,
            format('instance %s deleted', i.name), p_actor);
        status := 200;
        body := json_build_object('deleted', true, 'id', i.id, 'name', i.name);
    ELSE
        UPDATE instances SET desired_state = 'deleted',
               stop_signal = coalesce(stop_signal, 'TERM'),
               version = version + 1, updated_at = now()
         WHERE id = i.id RETURNING * INTO i;
        PERFORM cloud_event('instance.deleting', 'instance', i.id, i.name,
            format('instance %s: deleting, waiting for it to stop on its host', i.name), p_actor);
        status := 202;
        body := cloud_instance_json(i);
    END IF;
END $$;

CREATE FUNCTION cloud_host_action(p_name text, p_action text, p_if_match bigint,
                                  p_actor text, OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    h hosts;
    next_state text;
BEGIN
    SELECT * INTO h FROM hosts WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('host %s not found', p_name));
    END IF;
    IF p_if_match IS NOT NULL AND h.version <> p_if_match THEN
        PERFORM cloud_raise('CL412', format('host %s is at version %s, not %s', p_name, h.version, p_if_match));
    END IF;
    IF h.state = 'down' THEN
        PERFORM cloud_raise('CL409', format('host %s is down; it cannot be %s', p_name,
            CASE p_action WHEN 'drain' THEN 'drained' ELSE p_action || 'ed' END));
    END IF;
    status := 200;
    IF p_action = 'cordon' THEN
        next_state := CASE h.state WHEN 'ready' THEN 'cordoned' ELSE h.state END;
    ELSIF p_action = 'uncordon' THEN
        next_state := 'ready';
    ELSE
        status := 202;
        -- With no service instance left on it, a drain is already done.
        IF EXISTS (SELECT 1 FROM instances WHERE host_id = h.id AND service_id IS NOT NULL
                      AND state NOT IN ('exited', 'failed', 'lost')) THEN
            next_state := 'draining';
        ELSE
            next_state := 'drained';
        END IF;
    END IF;
    IF next_state <> h.state THEN
        UPDATE hosts SET state = next_state, version = version + 1, updated_at = now()
         WHERE id = h.id RETURNING * INTO h;
        PERFORM cloud_event(CASE p_action WHEN 'cordon' THEN 'host.cordoned'
                                          WHEN 'uncordon' THEN 'host.uncordoned'
                                          ELSE 'host.' || next_state END,
            'host', h.id, h.name,
            format('host %s %s', h.name,
                   CASE p_action WHEN 'uncordon' THEN 'uncordoned: ready'
                                 ELSE next_state END), p_actor);
    END IF;
    body := cloud_host_json(h);
END $$;

-- Group commit: many API writes in one transaction and so one NOTIFY
-- (DESIGN.md "Flows"). The fast path runs the items one after another; any
-- failure aborts the call and the controller sends the batch again with
-- p_safe, where each item runs in its own subtransaction so an item's
-- failure fails that item only and comes back as a row. (Subtransactions
-- are kept off the fast path: past 64 in one transaction PostgreSQL's
-- snapshots slow down sharply.)
-- cloud_batch_one(op, args) runs one operation; its one definition, with
-- every operation of the later migrations, is in 0008_start_restart.sql
-- (PL/pgSQL resolves it when cloud_batch runs).

CREATE FUNCTION cloud_batch(p jsonb, p_safe boolean)
RETURNS TABLE (idx integer, status integer, body json, err_state text,
               err_message text, err_field text, event_id bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    item jsonb;
    i integer := 0;
    r record;
    e_state text;
    e_msg text;
    e_col text;
BEGIN
    FOR item IN SELECT value FROM jsonb_array_elements(p) LOOP
        idx := i;
        err_state := NULL;
        err_message := NULL;
        err_field := NULL;
        IF NOT p_safe THEN
            r := cloud_batch_one(item->>'op', item->'args');
            status := r.st;
            body := r.bd;
        ELSE
            BEGIN
                r := cloud_batch_one(item->>'op', item->'args');
                status := r.st;
                body := r.bd;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE,
                                        e_msg = MESSAGE_TEXT,
                                        e_col = COLUMN_NAME;
                status := NULL;
                body := NULL;
                err_state := e_state;
                err_message := e_msg;
                err_field := nullif(e_col, '');
            END;
        END IF;
        event_id := nullif(current_setting('cloud.last_event', true), '')::bigint;
        RETURN NEXT;
        i := i + 1;
    END LOOP;
END $$;
