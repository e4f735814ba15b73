-- One status report (the slow path of cloud_agent_status), guest fields
-- included.
-- s: {"host", "epoch", "id", "generation", "state", "exit_code", "reason",
--     "started_ms", "finished_ms", "config_version", "ready", "addresses"}.
-- The three guest keys are optional: a report without them (an older
-- gateway) leaves the columns as they are.
CREATE OR REPLACE FUNCTION cloud_agent_status_one(s jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    h hosts;
    i instances;
    st text := s->>'state';
    code integer := (s->>'exit_code')::integer;
    why text := nullif(s->>'reason', '');
    cv bigint;
    rdy boolean;
    addrs jsonb;
    msg text;
    guest text := '';
BEGIN
    SELECT * INTO h FROM hosts WHERE id = s->>'host';
    IF NOT FOUND THEN
        RETURN format('host %s not found', s->>'host');
    END IF;
    IF h.session_epoch <> (s->>'epoch')::bigint THEN
        RETURN format('host %s: session %s is stale (current %s)', h.name, s->>'epoch',
                      h.session_epoch);
    END IF;
    SELECT * INTO i FROM instances WHERE id = s->>'id' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN format('instance %s not found', s->>'id');
    END IF;
    IF i.host_id IS DISTINCT FROM h.id THEN
        RETURN format('instance %s is not assigned to host %s', i.name, h.name);
    END IF;
    IF st = 'removed' THEN
        -- The agent confirms nothing is left: a deleted instance goes now.
        IF i.desired_state <> 'deleted' THEN
            RETURN format('instance %s reported removed but is not being deleted', i.name);
        END IF;
        DELETE FROM instances WHERE id = i.id;
        PERFORM cloud_event('instance.deleted', 'instance', i.id, i.name,
            format('instance %s deleted: removed from %s', i.name, h.name), 'agent');
        RETURN NULL;
    END IF;
    IF st NOT IN ('starting', 'running', 'stopping', 'exited', 'failed') THEN
        RETURN format('instance %s: state %s cannot be reported by an agent', i.name, st);
    END IF;
    IF st NOT IN ('exited', 'failed') THEN
        code := NULL;
        why := NULL;
    ELSIF code IS NOT NULL AND (code < 0 OR code > 255) THEN
        code := 255;
    END IF;
    IF st = 'failed' AND code = 0 THEN
        code := NULL;
    END IF;
    -- Guest fields: the version never goes back, ready only while running.
    cv := greatest(i.config_version, coalesce((s->>'config_version')::bigint, 0));
    rdy := CASE WHEN s ? 'ready' THEN st = 'running' AND coalesce((s->>'ready')::boolean, false)
                ELSE i.ready AND st = 'running' END;
    addrs := CASE WHEN s ? 'addresses' THEN cloud_addresses_clean(s->'addresses')
                  ELSE i.addresses END;
    IF i.state = st AND i.exit_code IS NOT DISTINCT FROM code
       AND i.reason IS NOT DISTINCT FROM why AND i.config_version = cv
       AND i.ready = rdy AND i.addresses = addrs THEN
        RETURN NULL;  -- a repeat (after a reconnect): nothing changes
    END IF;
    IF i.config_version <> cv THEN
        guest := guest || format(', config version %s acknowledged', cv);
    END IF;
    IF i.ready <> rdy THEN
        guest := guest || CASE WHEN rdy THEN ', ready' ELSE ', not ready' END;
    END IF;
    IF i.addresses <> addrs THEN
        guest := guest || format(', addresses %s',
            coalesce((SELECT string_agg(a, ' ') FROM jsonb_array_elements_text(addrs) a),
                     'none'));
    END IF;
    IF i.state = st AND i.exit_code IS NOT DISTINCT FROM code
       AND i.reason IS NOT DISTINCT FROM why THEN
        -- Only the guest fields moved.
        UPDATE instances SET config_version = cv, ready = rdy, addresses = addrs,
               version = version + 1, updated_at = now()
         WHERE id = i.id RETURNING * INTO i;
        PERFORM cloud_event('instance.guest', 'instance', i.id, i.name,
            format('instance %s on %s: guest%s', i.name, h.name,
                   left(guest, 1024)), 'agent');
        RETURN NULL;
    END IF;
    UPDATE instances SET state = st, exit_code = code, reason = left(why, 4096),
           config_version = cv, ready = rdy, addresses = addrs,
           started_at = CASE WHEN st = 'running' THEN
                            coalesce(to_timestamp(nullif((s->>'started_ms')::bigint, 0) / 1000.0),
                                     started_at, now())
                        ELSE started_at END,
           finished_at = CASE WHEN st IN ('exited', 'failed') THEN
                            coalesce(to_timestamp(nullif((s->>'finished_ms')::bigint, 0) / 1000.0),
                                     now())
                        WHEN st IN ('starting', 'running') THEN NULL
                        ELSE finished_at END,
           version = version + 1, updated_at = now()
     WHERE id = i.id RETURNING * INTO i;
    msg := CASE st
        WHEN 'exited' THEN format('instance %s exited (%s) on %s', i.name,
                                  coalesce(code::text, '?'), h.name)
        WHEN 'failed' THEN format('instance %s failed on %s', i.name, h.name)
        ELSE format('instance %s %s on %s', i.name, st, h.name) END;
    IF why IS NOT NULL THEN
        msg := msg || ': ' || left(why, 512);
    END IF;
    PERFORM cloud_event('instance.state', 'instance', i.id, i.name, msg, 'agent');
    RETURN NULL;
END $$;
