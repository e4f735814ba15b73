-- The asker reads a relay's next rows, in order, at most p_max of them
-- (a client is handed a bounded burst; the asker reads on while it gets
-- p_max), and deletes them.
CREATE OR REPLACE FUNCTION cloud_log_relay_read(p_id bigint, p_max integer)
RETURNS TABLE (seq integer, kind text, data bytea, log_offset bigint, status integer,
               message text)
LANGUAGE sql AS $$
    WITH d AS (
        DELETE FROM log_relay_chunks c
         WHERE c.relay_id = p_id
           AND c.seq IN (SELECT x.seq FROM log_relay_chunks x
                          WHERE x.relay_id = p_id ORDER BY x.seq LIMIT p_max)
        RETURNING c.seq, c.kind, c.data, c.log_offset, c.status, c.message
    ), u AS (
        UPDATE log_relays r SET unread = r.unread - (SELECT coalesce(sum(length(d.data)), 0) FROM d)
         WHERE r.id = p_id
    )
    SELECT d.seq, d.kind, d.data, d.log_offset, d.status, d.message FROM d ORDER BY d.seq
$$;
