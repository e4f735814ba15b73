-- POST /v1/instances/{id}/start: an ended instance runs again (202); one
-- meant to run already is 200, one still stopping CL409.
CREATE OR REPLACE FUNCTION cloud_instance_start(p_ref text, p_if_match bigint, p_actor text,
                                     OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    i := cloud_instance_lock(p_ref, p_if_match, true);
    IF i.state IN ('exited', 'failed', 'lost') THEN
        PERFORM cloud_instance_rerun(i, 'start requested');
        PERFORM cloud_event('instance.started', 'instance', i.id, i.name,
            format('instance %s: start requested (it had %s)', i.name, i.state), p_actor);
        status := 202;
    ELSIF i.desired_state = 'stopped' THEN
        PERFORM cloud_raise('CL409', format(
            'instance %s is still stopping; start it once it has exited (cloudctl wait)', i.name));
    ELSE
        status := 200; -- already meant to run
    END IF;
    SELECT cloud_instance_json(x) INTO body FROM instances x WHERE x.id = i.id;
END $$;
