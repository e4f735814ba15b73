-- p: [{"id": host id, "epoch": session epoch}, ...]. A host whose epoch
-- moved on (a newer session elsewhere) is skipped: its old session's
-- heartbeats prove nothing. Returns the number of hosts updated.
CREATE OR REPLACE FUNCTION cloud_agent_heartbeats(p jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    h hosts;
    n integer;
BEGIN
    -- The event lock before any row lock (docs/decisions.md §11).
    PERFORM pg_advisory_xact_lock(726200101);
    -- A host marked down while its agent still heartbeats is alive again.
    FOR h IN UPDATE hosts SET state = 'ready', last_seen = now(),
                              version = version + 1, updated_at = now()
               FROM jsonb_to_recordset(p) AS x(id text, epoch bigint)
              WHERE hosts.id = x.id AND hosts.session_epoch = x.epoch
                AND hosts.state = 'down'
             RETURNING hosts.* LOOP
        PERFORM cloud_event('host.ready', 'host', h.id, h.name,
            format('host %s heartbeats again: ready', h.name), 'agent');
    END LOOP;
    UPDATE hosts SET last_seen = now()
      FROM jsonb_to_recordset(p) AS x(id text, epoch bigint)
     WHERE hosts.id = x.id AND hosts.session_epoch = x.epoch;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
