-- op purge: {id, version}. A deleted instance that holds nothing any more
-- (never placed, finished, or lost with its host) is removed.
CREATE OR REPLACE FUNCTION cloud_rec_purge(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    SELECT * INTO i FROM instances WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR i.version <> (a->>'version')::bigint OR i.desired_state <> 'deleted'
       OR NOT (i.host_id IS NULL OR i.state IN ('exited', 'failed', 'lost')) THEN
        RETURN;
    END IF;
    DELETE FROM instances WHERE id = i.id;
    PERFORM cloud_event('instance.deleted', 'instance', i.id, i.name,
        format('instance %s deleted: %s', i.name,
               CASE WHEN i.host_id IS NULL THEN 'it was never placed'
                    WHEN i.state = 'lost' THEN 'lost with its host'
                    ELSE 'it stopped after it was retired' END), p_actor);
END $$;
