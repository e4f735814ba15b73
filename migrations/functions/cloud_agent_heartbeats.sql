-- p: [{"id": host id, "epoch": session epoch}, ...]. A host whose epoch
-- moved on (a newer session elsewhere) is skipped: its old session's
-- heartbeats prove nothing. Returns the number of hosts updated.
--
-- A heartbeat of hosts that are up writes no event, so it takes no event
-- lock: it never queues behind reconciler batches or API writes, and a
-- loaded leader cannot make healthy hosts look silent (docs/decisions.md
-- §21). Only a batch naming a host marked down takes the event lock (first,
-- §11), to bring the host back with its host.ready event. A host marked down
-- between the check and the update keeps its row out of the fast update
-- (state <> 'down' is checked again on the locked row); its next heartbeat
-- takes the slow path. Rows are locked in id order, as cloud_rec_liveness
-- locks them, so the two cannot deadlock.
CREATE OR REPLACE FUNCTION cloud_agent_heartbeats(p jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    h hosts;
    n integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hosts
                     JOIN jsonb_to_recordset(p) AS x(id text, epoch bigint)
                       ON hosts.id = x.id AND hosts.session_epoch = x.epoch
                    WHERE hosts.state = 'down') THEN
        UPDATE hosts SET last_seen = now()
         WHERE hosts.id IN (
               SELECT hosts.id FROM hosts
                 JOIN jsonb_to_recordset(p) AS x(id text, epoch bigint)
                   ON hosts.id = x.id AND hosts.session_epoch = x.epoch
                WHERE hosts.state <> 'down'
                ORDER BY hosts.id FOR NO KEY UPDATE OF hosts);
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    END IF;
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
