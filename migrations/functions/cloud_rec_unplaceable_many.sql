-- The unplaceable ops of one cloud_reconcile batch (p: the whole batch,
-- ops {op, id, version, reason}: the scheduler's explanations), applied as
-- one statement. An op is skipped unless its instance is still at that
-- version and pending, and the reason changed. One instance.unschedulable
-- event per instance explained, in id order.
CREATE OR REPLACE FUNCTION cloud_rec_unplaceable_many(p jsonb, p_actor text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    WITH explained AS (
        UPDATE instances i
           SET pending_reason = left(x.reason, 4096),
               version = i.version + 1, updated_at = now()
          FROM jsonb_to_recordset(p) AS x(op text, id text, version bigint, reason text)
         WHERE x.op = 'unplaceable' AND i.id = x.id AND i.version = x.version AND i.state = 'pending'
           AND i.pending_reason IS DISTINCT FROM left(x.reason, 4096)
        RETURNING i.id, i.name, x.reason)
    INSERT INTO events (type, object, object_id, name, message, actor)
    SELECT 'instance.unschedulable', 'instance', id, name,
           format('instance %s cannot be placed: %s', name, left(reason, 1024)), p_actor
      FROM explained ORDER BY id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
