-- op unplaceable: {id, version, reason}: the scheduler's explanation.
CREATE OR REPLACE FUNCTION cloud_rec_unplaceable(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    SELECT * INTO i FROM instances WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR i.version <> (a->>'version')::bigint OR i.state <> 'pending'
       OR i.pending_reason IS NOT DISTINCT FROM left(a->>'reason', 4096) THEN
        RETURN;
    END IF;
    UPDATE instances SET pending_reason = left(a->>'reason', 4096),
           version = version + 1, updated_at = now()
     WHERE id = i.id;
    PERFORM cloud_event('instance.unschedulable', 'instance', i.id, i.name,
        format('instance %s cannot be placed: %s', i.name, left(a->>'reason', 1024)), p_actor);
END $$;
