-- op place: {id, version, host}. Skipped unless the instance is still
-- pending, unplaced, wanted running and out of its restart back-off, and
-- the host still ready.
CREATE OR REPLACE FUNCTION cloud_rec_place(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
    h hosts;
BEGIN
    SELECT * INTO i FROM instances WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR i.version <> (a->>'version')::bigint OR i.state <> 'pending'
       OR i.host_id IS NOT NULL OR i.desired_state <> 'running'
       OR coalesce(i.next_restart_at <= now(), true) IS NOT TRUE THEN
        RETURN;
    END IF;
    SELECT * INTO h FROM hosts WHERE id = a->>'host';
    IF NOT FOUND OR h.state <> 'ready' THEN
        RETURN;
    END IF;
    -- next_restart_at stays: when the last back-off ended (a record).
    UPDATE instances SET state = 'scheduled', host_id = h.id, pending_reason = NULL,
           version = version + 1, updated_at = now()
     WHERE id = i.id;
    PERFORM cloud_event('instance.scheduled', 'instance', i.id, i.name,
        format('instance %s scheduled on %s', i.name, h.name), p_actor);
END $$;
