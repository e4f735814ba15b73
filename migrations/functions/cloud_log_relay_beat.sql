-- A replica's beat (every second, docs/decisions.md §30):
--  * its own liveness row;
--  * the links of the hosts whose agents it holds (p_links: [{"id": host
--    id, "epoch": session epoch}], or NULL: unchanged since the last
--    beat). A link of a newer session is kept; links of this replica not
--    in the list go;
--  * a sweep of relays whose asker has not beaten for a minute (and so
--    never reads or ends them), and of replicas silent for a day with
--    their links;
--  * of the relays it takes part in (p_relays: [id, ...]), those to end:
--    gone (ended by the other side, or swept), or whose other side has
--    not beaten within p_stale_ms.
CREATE OR REPLACE FUNCTION cloud_log_relay_beat(p_replica text, p_links jsonb,
                                                p_relays jsonb, p_stale_ms integer)
RETURNS TABLE (relay_id bigint, gone boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO controller_replicas (id, beat) VALUES (p_replica, now())
    ON CONFLICT (id) DO UPDATE SET beat = now();
    IF p_links IS NOT NULL THEN
        DELETE FROM agent_links l
         WHERE l.replica = p_replica
           AND NOT EXISTS (SELECT 1 FROM jsonb_to_recordset(p_links) AS x(id text, epoch bigint)
                            WHERE x.id = l.host_id);
        INSERT INTO agent_links (host_id, replica, session_epoch)
        SELECT x.id, p_replica, x.epoch
          FROM jsonb_to_recordset(p_links) AS x(id text, epoch bigint)
         ORDER BY x.id
        ON CONFLICT (host_id) DO UPDATE
           SET replica = excluded.replica, session_epoch = excluded.session_epoch
         WHERE agent_links.session_epoch <= excluded.session_epoch
           AND (agent_links.replica, agent_links.session_epoch)
               IS DISTINCT FROM (excluded.replica, excluded.session_epoch);
    END IF;
    DELETE FROM log_relays r
     WHERE r.created_at < now() - interval '1 minute'
       AND NOT EXISTS (SELECT 1 FROM controller_replicas c
                        WHERE c.id = r.asker AND c.beat > now() - interval '1 minute');
    WITH gone AS (
        DELETE FROM controller_replicas c WHERE c.beat < now() - interval '1 day'
        RETURNING c.id
    )
    DELETE FROM agent_links l USING gone WHERE l.replica = gone.id;
    RETURN QUERY
    SELECT x.id::bigint, r.id IS NULL
      FROM jsonb_array_elements_text(coalesce(p_relays, '[]')) AS x(id)
      LEFT JOIN log_relays r ON r.id = x.id::bigint
     WHERE r.id IS NULL
        OR NOT EXISTS (
           SELECT 1 FROM controller_replicas c
            WHERE c.id = CASE WHEN r.asker = p_replica THEN r.holder ELSE r.asker END
              AND c.beat > now() - make_interval(secs => p_stale_ms / 1000.0));
END $$;
