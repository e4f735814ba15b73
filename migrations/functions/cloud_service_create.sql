-- POST /v1/services. p is the validated body (controller/validate.c);
-- the CHECKs are the last line. One INSERT with every field: ready_when,
-- labels and stop_grace_seconds take the column defaults when absent
-- (written out here: a JSON null for ready_when fails as NOT NULL, as a
-- separate UPDATE did before the functions were collapsed). A service
-- with links gets its effective config bumped (its L_ENDPOINTS).
CREATE OR REPLACE FUNCTION cloud_service_create(p jsonb, p_idem text, p_actor text,
                                                OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    s services;
    nid text := cloud_new_id();
BEGIN
    body := cloud_idem_replay(p_idem, 'POST /v1/services', nid);
    IF body IS NOT NULL THEN
        status := 200;
        RETURN;
    END IF;
    PERFORM cloud_image_require(p->>'image');
    IF EXISTS (SELECT 1 FROM services WHERE name = p->>'name') THEN
        PERFORM cloud_raise('CL409', format('service %s already exists', p->>'name'), 'name');
    END IF;
    BEGIN
        INSERT INTO services (id, name, image, vcpus, memory_mib, disk_gib, args, env,
                              ports, restart, constraints, strategy, max_per_host,
                              partition_policy, links, replicas, max_unavailable, max_surge,
                              ready_when, labels, stop_grace_seconds)
        VALUES (nid, p->>'name', p->>'image',
                (p#>>'{resources,vcpus}')::integer, (p#>>'{resources,memory_mib}')::integer,
                (p#>>'{resources,disk_gib}')::integer, p->'args', p->'env', p->'ports',
                p->>'restart', p#>'{placement,constraints}', p#>>'{placement,strategy}',
                (p#>>'{placement,max_per_host}')::integer, p->>'partition_policy',
                p->'links', (p->>'replicas')::integer,
                (p#>>'{rollout,max_unavailable}')::integer,
                (p#>>'{rollout,max_surge}')::integer,
                CASE WHEN p ? 'ready_when' THEN p->>'ready_when' ELSE 'running' END,
                coalesce(p->'labels', '{}'),
                coalesce((p->>'stop_grace_seconds')::integer, 10))
        RETURNING * INTO s;
    EXCEPTION WHEN unique_violation THEN
        PERFORM cloud_raise('CL409', format('service %s already exists', p->>'name'), 'name');
    END;
    PERFORM cloud_event('service.created', 'service', s.id, s.name,
        format('service %s created: %s replicas of %s', s.name, s.replicas, s.image), p_actor);
    IF jsonb_array_length(s.links) > 0 THEN
        PERFORM cloud_config_bump(s.name);
    END IF;
    status := 201;
    body := cloud_service_json(s);
END $$;
