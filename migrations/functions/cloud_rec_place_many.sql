-- The place ops of one cloud_reconcile batch (p: the whole batch, ops
-- {op, id, version, host}), applied as one statement. An op is skipped
-- unless its instance is still at that version, pending, unplaced, wanted
-- running and out of its restart back-off, and its host still ready. One
-- instance.scheduled event per instance placed, in id order.
CREATE OR REPLACE FUNCTION cloud_rec_place_many(p jsonb, p_actor text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    WITH placed AS (
        UPDATE instances i
           SET state = 'scheduled', host_id = h.id, pending_reason = NULL,
               version = i.version + 1, updated_at = now()
          FROM jsonb_to_recordset(p) AS x(op text, id text, version bigint, host text)
          JOIN hosts h ON h.id = x.host AND h.state = 'ready'
         WHERE x.op = 'place' AND i.id = x.id AND i.version = x.version AND i.state = 'pending'
           AND i.host_id IS NULL AND i.desired_state = 'running'
           AND coalesce(i.next_restart_at <= now(), true)
        -- next_restart_at stays: when the last back-off ended (a record).
        RETURNING i.id, i.name, h.name AS host_name)
    INSERT INTO events (type, object, object_id, name, message, actor)
    SELECT 'instance.scheduled', 'instance', id, name,
           format('instance %s scheduled on %s', name, host_name), p_actor
      FROM placed ORDER BY id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
