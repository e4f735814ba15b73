-- The holder appends one row to a relay (kinds: see log_relay_chunks) and
-- wakes the asker ("logs chunk <asker> <id>" on cloud_events). Any kind
-- but data is the last. Returns the bytes the asker has not read yet, or
-- NULL when the relay is gone (the asker ended it): the holder stops.
CREATE OR REPLACE FUNCTION cloud_log_relay_put(p_id bigint, p_seq integer, p_kind text,
                                               p_data bytea, p_offset bigint,
                                               p_status integer, p_message text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_asker text;
    v_unread bigint;
BEGIN
    UPDATE log_relays
       SET unread = unread + length(p_data),
           state = CASE WHEN p_kind = 'data' THEN state ELSE 'done' END
     WHERE id = p_id AND state <> 'done'
    RETURNING asker, unread INTO v_asker, v_unread;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO log_relay_chunks (relay_id, seq, kind, data, log_offset, status, message)
    VALUES (p_id, p_seq, p_kind, p_data, p_offset, p_status, p_message);
    PERFORM pg_notify('cloud_events', format('logs chunk %s %s', v_asker, p_id));
    RETURN v_unread;
END $$;
