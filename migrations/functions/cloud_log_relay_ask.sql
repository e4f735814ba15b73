-- A replica asks for a console log through the replica that holds the
-- host's agent connection (docs/decisions.md §30): a request row, and a
-- NOTIFY on cloud_events ("logs ask <holder> <id>") that the holder picks
-- up. The holder is the replica whose link names the host's current
-- session and which beat within p_stale_ms. No row: no live replica holds
-- the host's agent (the caller answers 503). Asking is also a beat of the
-- asker: the holder must not take a new asker for a silent one.
CREATE OR REPLACE FUNCTION cloud_log_relay_ask(p_asker text, p_host text, p_instance text,
                                               p_tail_bytes bigint, p_tail_lines integer,
                                               p_follow boolean, p_stale_ms integer)
RETURNS TABLE (relay_id bigint, holder text)
LANGUAGE plpgsql AS $$
DECLARE
    v_holder text;
    v_id bigint;
BEGIN
    INSERT INTO controller_replicas (id, beat) VALUES (p_asker, now())
    ON CONFLICT (id) DO UPDATE SET beat = now();
    SELECT l.replica INTO v_holder
      FROM hosts h
      JOIN agent_links l ON l.host_id = h.id AND l.session_epoch = h.session_epoch
      JOIN controller_replicas r ON r.id = l.replica
     WHERE h.name = p_host
       AND r.beat > now() - make_interval(secs => p_stale_ms / 1000.0);
    IF v_holder IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO log_relays (asker, holder, host, instance_id, tail_bytes, tail_lines, follow)
    VALUES (p_asker, v_holder, p_host, p_instance, p_tail_bytes, p_tail_lines, p_follow)
    RETURNING id INTO v_id;
    PERFORM pg_notify('cloud_events', format('logs ask %s %s', v_holder, v_id));
    relay_id := v_id;
    holder := v_holder;
    RETURN NEXT;
END $$;
