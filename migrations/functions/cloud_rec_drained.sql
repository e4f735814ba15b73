-- op drained: {id, version}: a draining host with no service instance left
-- that holds resources.
CREATE OR REPLACE FUNCTION cloud_rec_drained(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    h hosts;
BEGIN
    SELECT * INTO h FROM hosts WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR h.version <> (a->>'version')::bigint OR h.state <> 'draining'
       OR EXISTS (SELECT 1 FROM instances WHERE host_id = h.id AND service_id IS NOT NULL
                     AND state NOT IN ('exited', 'failed', 'lost')) THEN
        RETURN;
    END IF;
    UPDATE hosts SET state = 'drained', version = version + 1, updated_at = now()
     WHERE id = h.id;
    PERFORM cloud_event('host.drained', 'host', h.id, h.name,
        format('host %s drained: its service instances run elsewhere', h.name), p_actor);
END $$;
