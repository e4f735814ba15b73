-- POST /v1/instances/{id}/kill. An instance not yet placed ends here, as
-- a signal would end it; a placed one is asked to stop. p_grace: the
-- grace period of this stop in seconds (NULL: the instance's
-- stop_grace_seconds); it is kept for a TERM kill of a placed instance
-- only, and a later kill without one goes back to the instance's. The
-- new set reaches the host through the instance.killed event.
CREATE OR REPLACE FUNCTION cloud_instance_kill(p_ref text, p_signal text, p_if_match bigint,
                                               p_actor text, p_grace integer DEFAULT NULL,
                                               OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    i := cloud_instance_lock(p_ref, p_if_match);
    IF i.state IN ('exited', 'failed', 'lost') THEN
        PERFORM cloud_raise('CL409', format('instance %s is not running (state %s)', i.name, i.state));
    END IF;
    IF i.desired_state = 'deleted' THEN
        PERFORM cloud_raise('CL409', format('instance %s is being deleted', i.name));
    END IF;
    IF i.host_id IS NULL THEN
        -- Nothing runs yet: the process ends here, as a signal would end it.
        UPDATE instances SET state = 'exited', desired_state = 'stopped',
               stop_signal = p_signal,
               exit_code = CASE p_signal WHEN 'KILL' THEN 137 ELSE 143 END,
               reason = format('killed by signal %s before it was placed', p_signal),
               finished_at = now(), version = version + 1, updated_at = now()
         WHERE id = i.id RETURNING * INTO i;
    ELSE
        UPDATE instances SET desired_state = 'stopped', stop_signal = p_signal,
               kill_grace_seconds = CASE WHEN p_signal = 'TERM' THEN p_grace
                                         ELSE kill_grace_seconds END,
               version = version + 1, updated_at = now()
         WHERE id = i.id RETURNING * INTO i;
    END IF;
    PERFORM cloud_event('instance.killed', 'instance', i.id, i.name,
        format('instance %s: kill requested with signal %s', i.name, p_signal), p_actor);
    status := 202;
    body := cloud_instance_json(i);
END $$;
