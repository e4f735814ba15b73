-- PATCH /v1/services/{name}: a JSON merge patch, validated by the
-- controller. One UPDATE sets every field the patch names; any key (even
-- one whose value equals the current one) is a new version and a
-- service.updated event. Then what follows from the change:
--   image, resources, args, env, ports  a new generation (the reconciler
--                                       rolls instances over to it)
--   links          config.linked, the effective config bumped
--   ports, ready_when  the service's endpoints recomputed
--   labels         copied to its live instances, one instance.updated each
--   stop_grace_seconds  likewise
CREATE OR REPLACE FUNCTION cloud_service_patch(p_name text, p jsonb, p_if_match bigint, p_actor text,
                                               OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    s services;
    n services;
    i instances;
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
        ready_when = CASE WHEN p ? 'ready_when' THEN p->>'ready_when' ELSE ready_when END,
        labels = CASE WHEN p ? 'labels' THEN p->'labels' ELSE labels END,
        stop_grace_seconds = coalesce((p->>'stop_grace_seconds')::integer, stop_grace_seconds),
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
    IF n.links IS DISTINCT FROM s.links THEN
        PERFORM cloud_event('config.linked', 'config', n.id, n.name,
            format('service %s links %s -> %s: effective config version %s', n.name,
                   s.links, n.links, cloud_config_bump(n.name)), p_actor);
    END IF;
    IF (n.ports, n.ready_when) IS DISTINCT FROM (s.ports, s.ready_when) THEN
        PERFORM cloud_endpoints_refresh(n.name);
    END IF;
    IF n.labels IS DISTINCT FROM s.labels THEN
        FOR i IN UPDATE instances SET labels = n.labels, version = version + 1, updated_at = now()
                  WHERE service_id = n.id AND desired_state <> 'deleted'
                    AND labels IS DISTINCT FROM n.labels
                  RETURNING * LOOP
            PERFORM cloud_event('instance.updated', 'instance', i.id, i.name,
                format('instance %s: labels set from service %s', i.name, n.name), p_actor);
        END LOOP;
    END IF;
    IF n.stop_grace_seconds <> s.stop_grace_seconds THEN
        FOR i IN UPDATE instances SET stop_grace_seconds = n.stop_grace_seconds,
                                      version = version + 1, updated_at = now()
                  WHERE service_id = n.id AND desired_state <> 'deleted'
                    AND stop_grace_seconds <> n.stop_grace_seconds
                  RETURNING * LOOP
            PERFORM cloud_event('instance.updated', 'instance', i.id, i.name,
                format('instance %s: stop grace period %s s from service %s', i.name,
                       n.stop_grace_seconds, n.name), p_actor);
        END LOOP;
    END IF;
    status := 200;
    body := cloud_service_json(n);
END $$;
