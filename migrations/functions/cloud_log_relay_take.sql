-- The holder takes a relay request asked of it (p_id), or every request
-- still waiting for it (p_id NULL: after its LISTEN session reconnected).
-- A request cancelled meanwhile is gone: no row.
CREATE OR REPLACE FUNCTION cloud_log_relay_take(p_id bigint, p_holder text)
RETURNS TABLE (relay_id bigint, asker text, host text, instance_id text,
               tail_bytes bigint, tail_lines integer, follow boolean)
LANGUAGE sql AS $$
    UPDATE log_relays r SET state = 'open'
     WHERE (p_id IS NULL OR r.id = p_id) AND r.holder = p_holder AND r.state = 'asked'
    RETURNING r.id, r.asker, r.host, r.instance_id, r.tail_bytes, r.tail_lines, r.follow
$$;
