-- POST /v1/instances: a one-off instance. p is the validated body; labels
-- and stop_grace_seconds are in the INSERT (a second UPDATE would cost the
-- hot path a row version).
CREATE OR REPLACE FUNCTION cloud_instance_create(p jsonb, p_idem text, p_actor text,
                                                 OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
    nid text := cloud_new_id();
    nm text;
BEGIN
    body := cloud_idem_replay(p_idem, 'POST /v1/instances', nid);
    IF body IS NOT NULL THEN
        status := 200;
        RETURN;
    END IF;
    PERFORM cloud_image_require(p->>'image');
    nm := coalesce(p->>'name', 'run-' || substr(nid, 1, 12));
    IF EXISTS (SELECT 1 FROM instances WHERE name = nm AND desired_state <> 'deleted') THEN
        PERFORM cloud_raise('CL409', format('instance %s already exists', nm), 'name');
    END IF;
    INSERT INTO instances (id, name, image, vcpus, memory_mib, disk_gib, args, env,
                           restart, constraints, strategy, max_per_host, labels,
                           stop_grace_seconds)
    VALUES (nid, nm, p->>'image',
            (p#>>'{resources,vcpus}')::integer, (p#>>'{resources,memory_mib}')::integer,
            (p#>>'{resources,disk_gib}')::integer, p->'args', p->'env', p->>'restart',
            p#>'{placement,constraints}', p#>>'{placement,strategy}',
            (p#>>'{placement,max_per_host}')::integer, coalesce(p->'labels', '{}'),
            coalesce((p->>'stop_grace_seconds')::integer, 10))
    RETURNING * INTO i;
    PERFORM cloud_event('instance.created', 'instance', i.id, i.name,
        format('instance %s created from %s', i.name, i.image), p_actor);
    status := 201;
    body := cloud_instance_json(i);
END $$;
