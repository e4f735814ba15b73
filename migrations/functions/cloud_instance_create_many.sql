-- A set-based fast path for the commonest write, creating one-off
-- instances: one INSERT for all the instances of a batch and one for their
-- events, instead of a PL/pgSQL call per instance. The controller uses it
-- when a batch holds only such creates (no idempotency keys, one actor);
-- any error fails the whole call and the controller falls back to
-- cloud_batch(), which answers item by item. Same columns as cloud_batch.
CREATE OR REPLACE FUNCTION cloud_instance_create_many(p jsonb, p_actor text)
RETURNS TABLE (idx integer, status integer, body json, err_state text,
               err_message text, err_field text, event_id bigint)
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p) x
                WHERE (cloud_image_find(x->>'image')).id IS NULL) THEN
        PERFORM cloud_raise('CL422', 'an image of the batch was not found', 'image');
    END IF;
    -- Event ids in commit order, as cloud_event() does.
    PERFORM pg_advisory_xact_lock(726200101);
    RETURN QUERY
    WITH items AS (
        SELECT (t.o - 1)::integer AS i, t.x AS b, cloud_new_id() AS nid
          FROM jsonb_array_elements(p) WITH ORDINALITY AS t(x, o)
    ), ins AS (
        INSERT INTO instances (id, name, image, vcpus, memory_mib, disk_gib, args, env,
                               restart, constraints, strategy, max_per_host, labels,
                               stop_grace_seconds)
        SELECT nid, coalesce(b->>'name', 'run-' || substr(nid, 1, 12)), b->>'image',
               (b#>>'{resources,vcpus}')::integer, (b#>>'{resources,memory_mib}')::integer,
               (b#>>'{resources,disk_gib}')::integer, b->'args', b->'env', b->>'restart',
               b#>'{placement,constraints}', b#>>'{placement,strategy}',
               (b#>>'{placement,max_per_host}')::integer, coalesce(b->'labels', '{}'),
               coalesce((b->>'stop_grace_seconds')::integer, 10)
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
