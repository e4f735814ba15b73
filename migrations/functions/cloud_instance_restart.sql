-- POST /v1/instances/{id}/restart: an ended instance runs again at once, a
-- placed one stops first and runs again when it has ended (the
-- instances_restart trigger).
CREATE OR REPLACE FUNCTION cloud_instance_restart(p_ref text, p_if_match bigint, p_actor text,
                                       OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    i := cloud_instance_lock(p_ref, p_if_match, true);
    IF i.state IN ('exited', 'failed', 'lost') THEN
        PERFORM cloud_instance_rerun(i, 'restart requested');
    ELSIF i.host_id IS NULL THEN
        -- Not placed yet: nothing to stop; it starts as it is.
        NULL;
    ELSE
        UPDATE instances SET desired_state = 'stopped', stop_signal = 'TERM',
               restart_requested = true, version = version + 1, updated_at = now()
         WHERE id = i.id;
    END IF;
    PERFORM cloud_event('instance.restart', 'instance', i.id, i.name,
        format('instance %s: restart requested', i.name), p_actor);
    status := 202;
    SELECT cloud_instance_json(x) INTO body FROM instances x WHERE x.id = i.id;
END $$;
