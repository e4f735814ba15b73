-- op retire: {id, version, reason}. Unplaced or finished instances go now
-- (as the API deletes them); the others get desired state deleted.
CREATE OR REPLACE FUNCTION cloud_rec_retire(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    SELECT * INTO i FROM instances WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR i.version <> (a->>'version')::bigint OR i.desired_state = 'deleted' THEN
        RETURN;
    END IF;
    IF i.host_id IS NULL OR i.state IN ('exited', 'failed', 'lost') THEN
        DELETE FROM instances WHERE id = i.id;
        PERFORM cloud_event('instance.deleted', 'instance', i.id, i.name,
            format('instance %s deleted: %s', i.name, a->>'reason'), p_actor);
    ELSE
        UPDATE instances SET desired_state = 'deleted',
               stop_signal = coalesce(stop_signal, 'TERM'),
               version = version + 1, updated_at = now()
         WHERE id = i.id;
        PERFORM cloud_event('instance.deleting', 'instance', i.id, i.name,
            format('instance %s: deleting: %s', i.name, a->>'reason'), p_actor);
    END IF;
END $$;
