-- PUT (p_mode 'put', p the new config), PATCH ('patch', a merge patch:
-- null removes a key) and rollback ('rollback', p {"version":N}). The body
-- was validated by the controller; the merged result is checked here. An
-- unchanged config makes no version and no event.
CREATE OR REPLACE FUNCTION cloud_config_write(p_name text, p_mode text, p jsonb, p_if_match bigint,
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
    -- The event lock before any row lock (docs/decisions.md §11).
    PERFORM pg_advisory_xact_lock(726200101);
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
