-- 0010: configuration as an API, links and endpoints (docs/config.md).
--
--   service_config (0001)   every kept version of a service's config: a flat
--                           object of strings; services.config_version names
--                           the current one (0: never configured, {})
--   service_runtime         per service NAME (it outlives a deleted service,
--                           so nothing here ever goes back when a name is
--                           reused): the effective config version `epoch`
--                           and the endpoint set with its version
--   services.ready_when     "running" (default) or "guest": whether a
--                           running instance is an endpoint only once its
--                           guest said {"ready":true}
--
-- The effective config of an instance is its service's config plus, per
-- link L, L_ENDPOINTS and L_ENDPOINTS_VERSION. Its version is the epoch,
-- bumped in the transaction of every change that alters it: a config write,
-- a change of links, a change of a linked service's endpoints. Endpoints are
-- recomputed by a trigger on instances when a running instance changes.
--
-- Locking: epoch and endpoint rows are written only while holding the event
-- log's advisory lock (726200101, see cloud_event), so two transactions
-- never hold them in opposite orders. Every writer here appends events and
-- takes that lock anyway.

ALTER TABLE services ADD COLUMN ready_when text NOT NULL DEFAULT 'running'
    CHECK (ready_when IN ('running', 'guest'));
ALTER TABLE services ADD COLUMN config_version bigint NOT NULL DEFAULT 0
    CHECK (config_version >= 0);

CREATE TABLE service_runtime (
    name              text COLLATE "C" PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 63),
    epoch             bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    endpoints_version bigint NOT NULL DEFAULT 0 CHECK (endpoints_version >= 0),
    endpoints         jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(endpoints) = 'array'),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX services_links ON services USING gin (links);

-- Versions kept per service (older ones are pruned on write).
CREATE FUNCTION cloud_config_keep() RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT 100::bigint $$;

-- Bumps the effective config version of the service named p_name.
CREATE FUNCTION cloud_config_bump(p_name text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    e bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    INSERT INTO service_runtime AS r (name, epoch) VALUES (p_name, 1)
    ON CONFLICT (name) DO UPDATE SET epoch = r.epoch + 1, updated_at = now()
    RETURNING r.epoch INTO e;
    RETURN e;
END $$;

-- The (address, port) pairs one reported address yields: "ip:port" (or
-- "[v6]:port") as is; a bare address (a "/prefix" dropped) once per declared
-- port, or with port 0 when the service declares none.
CREATE FUNCTION cloud_endpoint_pairs(p_raw text, p_ports jsonb)
RETURNS TABLE (address text, port integer)
LANGUAGE sql IMMUTABLE AS $$
    WITH m AS (
        SELECT regexp_match(p_raw, '^(\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):([0-9]{1,5})$') AS g,
               regexp_replace(p_raw, '/[0-9]{1,3}$', '') AS bare
    )
    SELECT coalesce(m.g[2], m.g[3]), m.g[4]::integer
      FROM m WHERE m.g IS NOT NULL AND m.g[4]::integer BETWEEN 1 AND 65535
    UNION ALL
    SELECT m.bare, p.port
      FROM m, LATERAL (
            SELECT (e.value->>'port')::integer AS port
              FROM jsonb_array_elements(p_ports) e
            UNION ALL
            SELECT 0 WHERE jsonb_array_length(p_ports) = 0) p
     WHERE m.g IS NULL AND m.bare <> ''
$$;

CREATE FUNCTION cloud_endpoint_addr(p_address text, p_port integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_port = 0 THEN p_address
                WHEN position(':' IN p_address) > 0 THEN '[' || p_address || ']:' || p_port
                ELSE p_address || ':' || p_port END
$$;

-- The endpoints of the service named p_name as they are now: running
-- instances meant to run (and, with ready_when "guest", ready) that have an
-- address. Sorted by addr, then instance id (byte order): stable.
CREATE FUNCTION cloud_endpoints_compute(p_name text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('instance', x.id, 'name', x.name,
                                                 'address', x.address, 'port', x.port,
                                                 'addr', x.addr)
                              ORDER BY x.addr COLLATE "C", x.id COLLATE "C"), '[]')
      FROM (SELECT DISTINCT i.id, i.name, p.address, p.port,
                   cloud_endpoint_addr(p.address, p.port) AS addr
              FROM services s
              JOIN instances i ON i.service_id = s.id
             CROSS JOIN LATERAL jsonb_array_elements_text(i.addresses) a(raw)
             CROSS JOIN LATERAL cloud_endpoint_pairs(a.raw, s.ports) p
             WHERE s.name = p_name AND i.state = 'running'
               AND i.desired_state = 'running'
               AND (s.ready_when = 'running' OR i.ready)) x
$$;

-- Recomputes the endpoints of p_name; when they changed, bumps their
-- version and the effective config version of every service linking to
-- p_name, and appends endpoints.changed (the gateway pushes to the hosts
-- of the linking services, endpoint watchers re-read).
CREATE FUNCTION cloud_endpoints_refresh(p_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r service_runtime;
    eps jsonb;
    l text;
BEGIN
    IF p_name IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(726200101);
    eps := cloud_endpoints_compute(p_name);
    SELECT * INTO r FROM service_runtime WHERE name = p_name;
    IF (FOUND AND r.endpoints = eps) OR (NOT FOUND AND eps = '[]'::jsonb) THEN
        RETURN;
    END IF;
    INSERT INTO service_runtime AS t (name, endpoints_version, endpoints)
    VALUES (p_name, 1, eps)
    ON CONFLICT (name) DO UPDATE SET endpoints_version = t.endpoints_version + 1,
                                     endpoints = eps, updated_at = now()
    RETURNING * INTO r;
    FOR l IN SELECT s.name FROM services s WHERE s.links ? p_name ORDER BY s.name LOOP
        PERFORM cloud_config_bump(l);
    END LOOP;
    PERFORM cloud_event('endpoints.changed', 'config',
        (SELECT id FROM services WHERE name = p_name), p_name,
        format('service %s endpoints version %s: %s endpoints', p_name,
               r.endpoints_version, jsonb_array_length(eps)), 'controller');
END $$;

-- Only a change that can move an endpoint costs a recomputation: the row
-- was or is running.
CREATE FUNCTION cloud_instances_endpoints_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.state = 'running' THEN
            PERFORM cloud_endpoints_refresh((SELECT name FROM services WHERE id = OLD.service_id));
        END IF;
        RETURN NULL;
    END IF;
    IF OLD.state <> 'running' AND NEW.state <> 'running' THEN
        RETURN NULL;
    END IF;
    PERFORM cloud_endpoints_refresh((SELECT name FROM services WHERE id = NEW.service_id));
    IF OLD.service_id IS DISTINCT FROM NEW.service_id THEN
        PERFORM cloud_endpoints_refresh((SELECT name FROM services WHERE id = OLD.service_id));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER instances_endpoints_upd AFTER UPDATE ON instances
    FOR EACH ROW WHEN ((OLD.state, OLD.desired_state, OLD.addresses, OLD.ready, OLD.service_id)
                       IS DISTINCT FROM
                       (NEW.state, NEW.desired_state, NEW.addresses, NEW.ready, NEW.service_id))
    EXECUTE FUNCTION cloud_instances_endpoints_trigger();
CREATE TRIGGER instances_endpoints_del AFTER DELETE ON instances
    FOR EACH ROW WHEN (OLD.state = 'running')
    EXECUTE FUNCTION cloud_instances_endpoints_trigger();

-- {"service","version","endpoints"} of p_name (a name never seen: version
-- 0, no endpoints).
CREATE FUNCTION cloud_endpoints_json(p_name text) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('service', p_name,
                             'version', coalesce(r.endpoints_version, 0),
                             'endpoints', coalesce(r.endpoints, '[]'::jsonb))
      FROM (SELECT 1) one LEFT JOIN service_runtime r ON r.name = p_name
$$;

CREATE FUNCTION cloud_endpoints_get(p_name text, OUT body json, OUT version bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM services WHERE name = p_name) THEN
        PERFORM cloud_raise('CL404', format('service %s not found', p_name));
    END IF;
    body := cloud_endpoints_json(p_name);
    version := (body->>'version')::bigint;
END $$;

-- The effective config of the service with id p_service (see the header).
-- Link variables win over same-named keys of the service's own config.
CREATE FUNCTION cloud_effective_config(p_service text, OUT version bigint, OUT config jsonb)
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT r.epoch FROM service_runtime r WHERE r.name = s.name), 0),
           coalesce((SELECT c.data FROM service_config c
                      WHERE c.service_id = s.id AND c.version = s.config_version), '{}'::jsonb)
           || coalesce((SELECT jsonb_object_agg(k.key, k.val)
                          FROM (SELECT upper(replace(l.value, '-', '_')) || '_ENDPOINTS' AS key,
                                       coalesce((SELECT string_agg(d.addr, ',' ORDER BY d.addr COLLATE "C")
                                                   FROM (SELECT DISTINCT e->>'addr' AS addr
                                                           FROM jsonb_array_elements(lr.endpoints) e) d),
                                                '') AS val
                                  FROM jsonb_array_elements_text(s.links) l
                                  LEFT JOIN service_runtime lr ON lr.name = l.value
                                UNION ALL
                                SELECT upper(replace(l.value, '-', '_')) || '_ENDPOINTS_VERSION',
                                       coalesce(lr.endpoints_version, 0)::text
                                  FROM jsonb_array_elements_text(s.links) l
                                  LEFT JOIN service_runtime lr ON lr.name = l.value) k),
                       '{}'::jsonb)
      FROM services s WHERE s.id = p_service
$$;

-- GET /v1/instances/{id}/config. An instance without a service has
-- version 0 and no config.
CREATE FUNCTION cloud_instance_config(p_ref text, OUT body json, OUT version bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    i instances;
    ec record;
BEGIN
    SELECT * INTO i FROM instances WHERE id = cloud_instance_resolve(p_ref);
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('instance %s not found', p_ref));
    END IF;
    SELECT * INTO ec FROM cloud_effective_config(i.service_id);
    version := coalesce(ec.version, 0);
    body := json_build_object('instance', i.id, 'name', i.name,
                              'service', (SELECT name FROM services WHERE id = i.service_id),
                              'version', version,
                              'config', coalesce(ec.config, '{}'::jsonb));
END $$;

CREATE FUNCTION cloud_config_json(s services, p_version bigint, p_data jsonb, p_at timestamptz)
RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('service', s.name, 'version', p_version,
                             'config', coalesce(p_data, '{}'::jsonb),
                             'updated_at', cloud_ts(p_at))
$$;

-- GET /v1/services/{name}/config[?version=N]. Version 0 always exists: the
-- empty config every service starts with.
CREATE FUNCTION cloud_config_get(p_name text, p_version bigint, OUT body json, OUT version bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s services;
    c service_config;
BEGIN
    SELECT * INTO s FROM services WHERE name = p_name;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('service %s not found', p_name));
    END IF;
    version := coalesce(p_version, s.config_version);
    IF version = 0 THEN
        body := cloud_config_json(s, 0, '{}', NULL);
        RETURN;
    END IF;
    SELECT * INTO c FROM service_config WHERE service_id = s.id AND service_config.version = cloud_config_get.version;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('service %s has no config version %s (current %s; the newest %s are kept)',
                                            p_name, version, s.config_version, cloud_config_keep()), 'version');
    END IF;
    body := cloud_config_json(s, c.version, c.data, c.created_at);
END $$;

-- GET /v1/services/{name}/config/history: newest first, after = a version
-- (the page holds versions below it).
CREATE FUNCTION cloud_config_history(p_name text, p_after bigint, p_limit integer)
RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s services;
    items json;
    n integer;
    lastv bigint;
BEGIN
    SELECT * INTO s FROM services WHERE name = p_name;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('service %s not found', p_name));
    END IF;
    SELECT coalesce(json_agg(json_build_object('version', x.version,
                                               'created_at', cloud_ts(x.created_at),
                                               'config', x.data) ORDER BY x.version DESC), '[]'),
           count(*), min(x.version)
      INTO items, n, lastv
      FROM (SELECT * FROM service_config c
             WHERE c.service_id = s.id AND (p_after IS NULL OR c.version < p_after)
             ORDER BY c.version DESC LIMIT p_limit) x;
    RETURN json_build_object('items', items, 'next',
        CASE WHEN n = p_limit AND EXISTS (SELECT 1 FROM service_config c
                                           WHERE c.service_id = s.id AND c.version < lastv)
             THEN lastv::text END);
END $$;

-- PUT (p_mode 'put', p the new config), PATCH ('patch', a merge patch:
-- null removes a key) and rollback ('rollback', p {"version":N}). The body
-- was validated by the controller; the merged result is checked here. An
-- unchanged config makes no version and no event.
CREATE FUNCTION cloud_config_write(p_name text, p_mode text, p jsonb, p_if_match bigint,
                                   p_actor text, OUT status integer, OUT body json,
                                   OUT version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    s services;
    cur jsonb := '{}';
    cur_at timestamptz;
    nw jsonb;
    nv bigint;
    changed text[];
    total bigint;
BEGIN
    SELECT * INTO s FROM services WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('service %s not found', p_name));
    END IF;
    IF p_if_match IS NOT NULL AND s.config_version <> p_if_match THEN
        PERFORM cloud_raise('CL412', format('service %s config is at version %s, not %s',
                                            p_name, s.config_version, p_if_match));
    END IF;
    IF s.state = 'deleting' THEN
        PERFORM cloud_raise('CL409', format('service %s is being deleted', p_name));
    END IF;
    IF s.config_version > 0 THEN
        SELECT c.data, c.created_at INTO cur, cur_at FROM service_config c
         WHERE c.service_id = s.id AND c.version = s.config_version;
    END IF;
    CASE p_mode
    WHEN 'put' THEN
        nw := p;
    WHEN 'patch' THEN
        SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}') INTO nw
          FROM jsonb_each(cur || p) e WHERE jsonb_typeof(e.value) <> 'null';
    WHEN 'rollback' THEN
        IF (p->>'version')::bigint = 0 THEN
            nw := '{}';
        ELSE
            SELECT c.data INTO nw FROM service_config c
             WHERE c.service_id = s.id AND c.version = (p->>'version')::bigint;
            IF NOT FOUND THEN
                PERFORM cloud_raise('CL404', format('service %s has no config version %s (current %s; the newest %s are kept)',
                                                    p_name, p->>'version', s.config_version,
                                                    cloud_config_keep()), 'version');
            END IF;
        END IF;
    ELSE
        PERFORM cloud_raise('CL422', format('unknown config write %s', p_mode));
    END CASE;
    SELECT count(*), coalesce(sum(octet_length(e.key) + octet_length(e.value #>> '{}')), 0)
      INTO nv, total FROM jsonb_each(nw) e;
    IF nv > 1000 THEN
        PERFORM cloud_raise('CL422', format('service %s config would have %s keys; at most 1000', p_name, nv), 'config');
    END IF;
    IF total > 1048576 THEN
        PERFORM cloud_raise('CL422', format('service %s config would be %s bytes; at most 1048576 (keys and values)', p_name, total), 'config');
    END IF;
    status := 200;
    IF nw = cur THEN
        version := s.config_version;
        body := cloud_config_json(s, s.config_version, cur, cur_at);
        RETURN;
    END IF;
    nv := s.config_version + 1;
    INSERT INTO service_config (service_id, version, data) VALUES (s.id, nv, nw);
    UPDATE services SET config_version = nv WHERE id = s.id RETURNING * INTO s;
    DELETE FROM service_config c WHERE c.service_id = s.id AND c.version <= nv - cloud_config_keep();
    SELECT array_agg(k ORDER BY k) INTO changed
      FROM (SELECT key AS k FROM jsonb_each(nw) n
             WHERE NOT cur ? n.key OR cur->n.key <> n.value
            UNION
            SELECT key FROM jsonb_each(cur) o WHERE NOT nw ? o.key) d;
    PERFORM cloud_event(CASE p_mode WHEN 'rollback' THEN 'config.rolled_back' ELSE 'config.updated' END,
        'config', s.id, s.name,
        format('service %s config version %s -> %s%s: %s keys, changed %s%s', s.name, nv - 1, nv,
               CASE p_mode WHEN 'rollback' THEN format(' (rollback to %s)', p->>'version') ELSE '' END,
               (SELECT count(*) FROM jsonb_each(nw)),
               array_to_string(changed[1:10], ', '),
               CASE WHEN cardinality(changed) > 10 THEN format(' and %s more', cardinality(changed) - 10) ELSE '' END),
        p_actor);
    PERFORM cloud_config_bump(s.name);
    version := nv;
    body := cloud_config_json(s, nv, nw, now());
END $$;

-- JSON: 0002's service shape, defined whole, with "ready_when" (a wrapper
-- that appends to the earlier JSON as text re-parses every object; 0011
-- wraps this one for its labels).
CREATE OR REPLACE FUNCTION cloud_service_json(s services) RETURNS json
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
        'created_at', cloud_ts(s.created_at), 'updated_at', cloud_ts(s.updated_at),
        'ready_when', s.ready_when)
$$;

-- Create: the earlier create, then ready_when; a service born with links
-- gets an effective config version (its links' variables) at once.
ALTER FUNCTION cloud_service_create RENAME TO cloud_service_create_pre0010;
CREATE FUNCTION cloud_service_create(p jsonb, p_idem text, p_actor text,
                                     OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    s services;
BEGIN
    SELECT f.status, f.body INTO status, body
      FROM cloud_service_create_pre0010(p, p_idem, p_actor) f;
    IF status <> 201 THEN
        RETURN;
    END IF;
    SELECT * INTO s FROM services WHERE id = body->>'id';
    IF p ? 'ready_when' AND p->>'ready_when' IS DISTINCT FROM s.ready_when THEN
        UPDATE services SET ready_when = p->>'ready_when' WHERE id = s.id RETURNING * INTO s;
        body := cloud_service_json(s);
    END IF;
    IF jsonb_array_length(s.links) > 0 THEN
        PERFORM cloud_config_bump(s.name);
    END IF;
END $$;

-- Patch: the earlier patch, then ready_when; a change of links bumps the
-- effective config version (config.linked), a change of ports or
-- ready_when recomputes the endpoints.
ALTER FUNCTION cloud_service_patch RENAME TO cloud_service_patch_pre0010;
CREATE FUNCTION cloud_service_patch(p_name text, p jsonb, p_if_match bigint, p_actor text,
                                    OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    o services;
    s services;
BEGIN
    -- Locked before the earlier patch reads it, so the comparison below
    -- sees exactly this transaction's change.
    SELECT * INTO o FROM services WHERE name = p_name FOR UPDATE;
    -- The earlier patch ignores ready_when but still counts it as a change
    -- (a new version, service.updated).
    SELECT f.status, f.body INTO status, body
      FROM cloud_service_patch_pre0010(p_name, p, p_if_match, p_actor) f;
    IF p = '{}'::jsonb THEN
        RETURN;
    END IF;
    IF p ? 'ready_when' THEN
        UPDATE services SET ready_when = p->>'ready_when'
         WHERE name = p_name AND ready_when IS DISTINCT FROM p->>'ready_when';
    END IF;
    SELECT * INTO s FROM services WHERE name = p_name;
    IF s.ready_when IS DISTINCT FROM o.ready_when THEN
        body := cloud_service_json(s);
    END IF;
    IF s.links IS DISTINCT FROM o.links THEN
        PERFORM cloud_event('config.linked', 'config', s.id, s.name,
            format('service %s links %s -> %s: effective config version %s', s.name,
                   o.links, s.links, cloud_config_bump(s.name)), p_actor);
    END IF;
    IF (s.ports, s.ready_when) IS DISTINCT FROM (o.ports, o.ready_when) THEN
        PERFORM cloud_endpoints_refresh(s.name);
    END IF;
END $$;
