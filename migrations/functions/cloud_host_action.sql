-- POST /v1/hosts/{name}/{cordon,uncordon,drain}: the host's next state and
-- its event (CL409 for a down host).
CREATE OR REPLACE FUNCTION cloud_host_action(p_name text, p_action text, p_if_match bigint,
                                  p_actor text, OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    h hosts;
    next_state text;
BEGIN
    SELECT * INTO h FROM hosts WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('host %s not found', p_name));
    END IF;
    IF p_if_match IS NOT NULL AND h.version <> p_if_match THEN
        PERFORM cloud_raise('CL412', format('host %s is at version %s, not %s', p_name, h.version, p_if_match));
    END IF;
    IF h.state = 'down' THEN
        PERFORM cloud_raise('CL409', format('host %s is down; it cannot be %s', p_name,
            CASE p_action WHEN 'drain' THEN 'drained' ELSE p_action || 'ed' END));
    END IF;
    status := 200;
    IF p_action = 'cordon' THEN
        next_state := CASE h.state WHEN 'ready' THEN 'cordoned' ELSE h.state END;
    ELSIF p_action = 'uncordon' THEN
        next_state := 'ready';
    ELSE
        status := 202;
        -- With no service instance left on it, a drain is already done.
        IF EXISTS (SELECT 1 FROM instances WHERE host_id = h.id AND service_id IS NOT NULL
                      AND state NOT IN ('exited', 'failed', 'lost')) THEN
            next_state := 'draining';
        ELSE
            next_state := 'drained';
        END IF;
    END IF;
    IF next_state <> h.state THEN
        UPDATE hosts SET state = next_state, version = version + 1, updated_at = now()
         WHERE id = h.id RETURNING * INTO h;
        PERFORM cloud_event(CASE p_action WHEN 'cordon' THEN 'host.cordoned'
                                          WHEN 'uncordon' THEN 'host.uncordoned'
                                          ELSE 'host.' || next_state END,
            'host', h.id, h.name,
            format('host %s %s', h.name,
                   CASE p_action WHEN 'uncordon' THEN 'uncordoned: ready'
                                 ELSE next_state END), p_actor);
    END IF;
    body := cloud_host_json(h);
END $$;
