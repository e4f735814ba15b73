-- Marks down every registered host (session_epoch > 0: a host no agent
-- ever registered has no heartbeat to miss) silent for down_after, where silence is measured
-- from the latest of its last heartbeat, its creation and the start of the
-- caller's term (p_since_ms, on the database clock): a new leader never
-- declares a host down before it has itself watched it for down_after.
-- The host's instances become lost and their service replaces them. Those
-- of partition_policy stop services get desired state deleted (their agent
-- has fenced them; KILL should it come back); those of keep services stay
-- wanted running, waiting for their host: cloud_agent_register takes back
-- the ones still running when it returns (the replacement is then retired
-- as one too many) and retires the others. One-offs keep theirs (their
-- restart policy decides). Returns what changed, for the caller to re-read.
CREATE OR REPLACE FUNCTION cloud_rec_liveness(p_epoch bigint, p_actor text, p_since_ms bigint)
RETURNS TABLE (kind text, id text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    da integer;
    since timestamptz := to_timestamp(p_since_ms / 1000.0);
    h hosts;
    i instances;
    silent integer;
BEGIN
    SELECT down_after_seconds INTO da FROM cluster_settings WHERE cluster_settings.id = 1;
    -- Nothing silent (the case every second but the rare one): done, with
    -- no lock taken. The fence (cloud_lease_check) takes the event lock,
    -- and waiting for it behind status batches held each pass of the
    -- reconciler 250 ms at 100,000 instances (issue 13).
    IF NOT EXISTS (SELECT 1 FROM hosts
                    WHERE state <> 'down' AND session_epoch > 0
                      AND greatest(coalesce(last_seen, created_at), created_at, since)
                          < now() - make_interval(secs => da)) THEN
        RETURN;
    END IF;
    PERFORM cloud_lease_check(p_epoch);
    FOR h IN SELECT * FROM hosts
              WHERE state <> 'down' AND session_epoch > 0
                AND greatest(coalesce(last_seen, created_at), created_at, since)
                    < now() - make_interval(secs => da)
              ORDER BY hosts.id FOR UPDATE LOOP
        silent := floor(extract(epoch FROM now() - coalesce(h.last_seen, h.created_at)));
        UPDATE hosts SET state = 'down', version = version + 1, updated_at = now()
         WHERE hosts.id = h.id;
        PERFORM cloud_event('host.down', 'host', h.id, h.name,
            format('host %s down: no heartbeat for %s s', h.name, silent), p_actor);
        kind := 'host';
        id := h.id;
        RETURN NEXT;
        FOR i IN UPDATE instances SET state = 'lost',
                        reason = format('host %s down: no heartbeat for %s s', h.name, silent),
                        desired_state = CASE WHEN cloud_partition_stop(service_id)
                                             THEN 'deleted' ELSE desired_state END,
                        stop_signal = CASE WHEN cloud_partition_stop(service_id)
                                           THEN coalesce(stop_signal, 'KILL')
                                           ELSE stop_signal END,
                        finished_at = now(), version = version + 1, updated_at = now()
                  WHERE host_id = h.id AND state NOT IN ('exited', 'failed', 'lost')
                 RETURNING * LOOP
            PERFORM cloud_event('instance.lost', 'instance', i.id, i.name,
                format('instance %s lost with host %s%s', i.name, h.name,
                       CASE WHEN i.service_id IS NOT NULL
                            THEN format(': service %s replaces it%s',
                                        (SELECT name FROM services WHERE services.id = i.service_id),
                                        CASE WHEN i.desired_state = 'running'
                                             THEN ' (partition_policy keep: taken back if it still '
                                                  'runs when its host returns)'
                                             ELSE '' END)
                            ELSE '' END), p_actor);
            kind := 'instance';
            id := i.id;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END $$;
