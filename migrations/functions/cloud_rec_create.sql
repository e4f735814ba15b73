-- op create: {service, version, reason}. A new pending instance of the
-- service at its current spec and generation, named <service>-<ordinal>
-- with the lowest ordinal (and name) no live instance uses. Skipped when the
-- service changed since the caller looked (version).
CREATE OR REPLACE FUNCTION cloud_rec_create(a jsonb, p_actor text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    s services;
    i instances;
    o integer;
    nm text;
BEGIN
    SELECT * INTO s FROM services WHERE id = a->>'service' FOR UPDATE;
    IF NOT FOUND OR s.version <> (a->>'version')::bigint OR s.state <> 'active' THEN
        RETURN NULL;
    END IF;
    FOR attempt IN 1..3 LOOP
        SELECT g INTO o FROM generate_series(1, 20001) g
         WHERE NOT EXISTS (SELECT 1 FROM instances x
                            WHERE x.service_id = s.id AND x.ordinal = g
                              AND x.desired_state <> 'deleted')
           AND NOT EXISTS (SELECT 1 FROM instances x
                            WHERE x.name = s.name || '-' || g
                              AND x.desired_state <> 'deleted')
         LIMIT 1;
        nm := s.name || '-' || o;
        INSERT INTO instances (id, name, service_id, ordinal, generation, image, vcpus,
                               memory_mib, disk_gib, args, env, restart, constraints,
                               strategy, max_per_host)
        VALUES (cloud_new_id(), nm, s.id, o, s.generation, s.image, s.vcpus, s.memory_mib,
                s.disk_gib, s.args, s.env, s.restart, s.constraints, s.strategy,
                s.max_per_host)
        ON CONFLICT DO NOTHING
        RETURNING * INTO i;
        IF FOUND THEN
            PERFORM cloud_event('instance.created', 'instance', i.id, i.name,
                format('instance %s created (generation %s): %s', i.name, i.generation,
                       a->>'reason'), p_actor);
            RETURN i.id;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
