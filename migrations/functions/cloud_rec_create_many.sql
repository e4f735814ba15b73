-- The create ops of one cloud_reconcile batch (p: the whole batch, ops
-- {op, service, version, reason}), applied per service as one statement:
-- a service still at that version and active gets one new pending
-- instance per op, at its current spec and generation, named
-- <service>-<ordinal> with the lowest ordinals (and names) no live instance
-- uses, and one instance.created event each, with its op's reason, in
-- ordinal order. The lowest k free ordinals are at most the live count + k,
-- so the search is one anti-join over that range, not a scan from 1 per
-- instance (which made a scale-up of N cost N^2 / 2 probes). Returns the
-- ids created.
CREATE OR REPLACE FUNCTION cloud_rec_create_many(p jsonb, p_actor text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    s services;
    sid text;
    k integer;
    live integer;
BEGIN
    FOR sid IN SELECT DISTINCT x->>'service' FROM jsonb_array_elements(p) x
                WHERE x->>'op' = 'create' ORDER BY 1 LOOP
        SELECT * INTO s FROM services WHERE id = sid FOR UPDATE;
        CONTINUE WHEN NOT FOUND OR s.state <> 'active';
        SELECT count(*) INTO k FROM jsonb_array_elements(p) x
         WHERE x->>'op' = 'create' AND x->>'service' = sid
           AND (x->>'version')::bigint = s.version;
        CONTINUE WHEN k = 0;
        SELECT count(*) INTO live FROM instances x
         WHERE x.service_id = s.id AND x.desired_state <> 'deleted';
        RETURN QUERY
        WITH ops AS (
            SELECT x.value->>'reason' AS reason,
                   row_number() OVER (ORDER BY x.ord) AS rn
              FROM jsonb_array_elements(p) WITH ORDINALITY AS x(value, ord)
             WHERE x.value->>'op' = 'create' AND x.value->>'service' = sid
               AND (x.value->>'version')::bigint = s.version),
        free AS (
            SELECT g, row_number() OVER (ORDER BY g) AS rn
              FROM generate_series(1, least(live + k + 64, 1000000)) g
             WHERE NOT EXISTS (SELECT 1 FROM instances x
                                WHERE x.service_id = s.id AND x.ordinal = g
                                  AND x.desired_state <> 'deleted')
               AND NOT EXISTS (SELECT 1 FROM instances x
                                WHERE x.name = s.name || '-' || g
                                  AND x.desired_state <> 'deleted')),
        made AS (
            INSERT INTO instances (id, name, service_id, ordinal, generation, image, vcpus,
                                   memory_mib, disk_gib, args, env, restart, constraints,
                                   strategy, max_per_host)
            SELECT cloud_new_id(), s.name || '-' || f.g, s.id, f.g, s.generation, s.image,
                   s.vcpus, s.memory_mib, s.disk_gib, s.args, s.env, s.restart,
                   s.constraints, s.strategy, s.max_per_host
              FROM ops o JOIN free f ON f.rn = o.rn
             ORDER BY f.g
            ON CONFLICT DO NOTHING
            RETURNING instances.id, instances.name, instances.ordinal, instances.generation),
        ev AS (
            INSERT INTO events (type, object, object_id, name, message, actor)
            SELECT 'instance.created', 'instance', m.id, m.name,
                   format('instance %s created (generation %s): %s', m.name, m.generation,
                          o.reason), p_actor
              FROM made m JOIN free f ON f.g = m.ordinal JOIN ops o ON o.rn = f.rn
             ORDER BY m.ordinal
            RETURNING object_id)
        SELECT object_id FROM ev;
    END LOOP;
END $$;
