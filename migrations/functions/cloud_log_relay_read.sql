-- The asker reads a relay's rows, in order, and deletes them.
CREATE OR REPLACE FUNCTION cloud_log_relay_read(p_id bigint)
RETURNS TABLE (seq integer, kind text, data bytea, log_offset bigint, status integer,
               message text)
LANGUAGE sql AS $$
    WITH d AS (
        DELETE FROM log_relay_chunks c WHERE c.relay_id = p_id
        RETURNING c.seq, c.kind, c.data, c.log_offset, c.status, c.message
    ), u AS (
        UPDATE log_relays r SET unread = r.unread - (SELECT coalesce(sum(length(d.data)), 0) FROM d)
         WHERE r.id = p_id
    )
    SELECT d.seq, d.kind, d.data, d.log_offset, d.status, d.message FROM d ORDER BY d.seq
$$;
