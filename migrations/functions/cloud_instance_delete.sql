-- DELETE /v1/instances/{id}: an unplaced instance goes at once; a placed
-- one is marked for deletion and goes when its host reports it gone.
CREATE OR REPLACE FUNCTION cloud_instance_delete(p_ref text, p_if_match bigint, p_actor text,
                                      OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    i := cloud_instance_lock(p_ref, p_if_match);
    IF i.host_id IS NULL OR i.state IN ('exited', 'failed', 'lost') THEN
        DELETE FROM instances WHERE id = i.id;
        PERFORM cloud_event('instance.deleted', 'instance', i.id, i.name,
            format('instance %s deleted', i.name), p_actor);
        status := 200;
        body := json_build_object('deleted', true, 'id', i.id, 'name', i.name);
    ELSE
        UPDATE instances SET desired_state = 'deleted',
               stop_signal = coalesce(stop_signal, 'TERM'),
               version = version + 1, updated_at = now()
         WHERE id = i.id RETURNING * INTO i;
        PERFORM cloud_event('instance.deleting', 'instance', i.id, i.name,
            format('instance %s: deleting, waiting for it to stop on its host', i.name), p_actor);
        status := 202;
        body := cloud_instance_json(i);
    END IF;
END $$;
