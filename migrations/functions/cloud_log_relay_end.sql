-- A relay ends: its rows go. Called by the asker (its client left, or it
-- read the last row) or by the holder (the asker stopped beating). A
-- holder still streaming is told to stop ("logs end <holder> <id>"; a
-- holder that ends it itself finds nothing left to stop).
CREATE OR REPLACE FUNCTION cloud_log_relay_end(p_id bigint, p_replica text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_holder text;
    v_state text;
BEGIN
    DELETE FROM log_relays
     WHERE id = p_id AND (asker = p_replica OR holder = p_replica)
    RETURNING holder, state INTO v_holder, v_state;
    IF FOUND AND v_state <> 'done' THEN
        PERFORM pg_notify('cloud_events', format('logs end %s %s', v_holder, p_id));
    END IF;
END $$;
