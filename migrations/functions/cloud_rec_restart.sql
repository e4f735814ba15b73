-- op restart: {id, version}. The restart policy said yes: the instance goes
-- back to pending (same id and name, unplaced) with restart_count + 1 and
-- an exponential back-off on the database clock: 1 s doubling per restart,
-- at most 300 s, back to 1 s after a run of 10 minutes or more.
CREATE OR REPLACE FUNCTION cloud_rec_restart(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
    attempt integer;
    backoff integer;
    why text;
BEGIN
    SELECT * INTO i FROM instances WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR i.version <> (a->>'version')::bigint OR i.desired_state <> 'running'
       OR i.state NOT IN ('exited', 'failed', 'lost') THEN
        RETURN;
    END IF;
    attempt := i.restart_count + 1;
    IF i.started_at IS NOT NULL AND i.finished_at IS NOT NULL
       AND i.finished_at - i.started_at >= interval '10 minutes' THEN
        backoff := 1;
    ELSE
        backoff := least(300, power(2, least(i.restart_count, 9))::integer);
    END IF;
    why := CASE i.state
        WHEN 'exited' THEN format('exit %s', coalesce(i.exit_code::text, '?'))
        WHEN 'failed' THEN 'failure' || coalesce(': ' || left(i.reason, 256), '')
        ELSE 'loss' || coalesce(': ' || left(i.reason, 256), '') END;
    why := format('restarting after %s (attempt %s, back-off %s s)', why, attempt, backoff);
    UPDATE instances SET state = 'pending', host_id = NULL, exit_code = NULL, reason = NULL,
           stop_signal = NULL, started_at = NULL, finished_at = NULL,
           restart_count = attempt, next_restart_at = now() + make_interval(secs => backoff),
           pending_reason = why, version = version + 1, updated_at = now()
     WHERE id = i.id;
    PERFORM cloud_event('instance.restarting', 'instance', i.id, i.name,
        format('instance %s %s', i.name, why), p_actor);
END $$;
