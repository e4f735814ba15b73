-- 0004: the agent gateway's writes (controller/gateway.c). Three functions,
-- each one round trip and one transaction, each appending its events in
-- that transaction (the read cache and the SSE watchers follow events):
--
--   cloud_agent_register     an agent's Hello: upsert the host, bump its
--                            session_epoch (the fencing token)
--   cloud_agent_heartbeats   one statement per flush interval for every
--                            host connected to this controller
--   cloud_agent_status       InstanceStatus reports, group-committed
--
-- last_seen alone is liveness, not state: a heartbeat that only moves it
-- appends no event (one event per host per interval would be most of the
-- event log). A heartbeat that changes the host's state (down -> ready)
-- does append one. See docs/agent.md.

-- p: {"name","address","vcpus","memory_mib","disk_gib","hypervisor","arch",
--     "labels"}. Returns the host id and the new session epoch.
CREATE FUNCTION cloud_agent_register(p jsonb, OUT host_id text, OUT session_epoch bigint)
LANGUAGE plpgsql AS $$
DECLARE
    h hosts;
    was text;
BEGIN
    SELECT * INTO h FROM hosts WHERE name = p->>'name' FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO hosts (id, name, address, state, labels, cap_vcpus, cap_memory_mib,
                           cap_disk_gib, hypervisor, arch, session_epoch, last_seen)
        VALUES (cloud_new_id(), p->>'name', coalesce(p->>'address', ''), 'ready',
                coalesce(p->'labels', '{}'), (p->>'vcpus')::integer,
                (p->>'memory_mib')::bigint, (p->>'disk_gib')::bigint,
                p->>'hypervisor', coalesce(nullif(p->>'arch', ''), 'x86_64'), 1, now())
        RETURNING * INTO h;
        PERFORM cloud_event('host.registered', 'host', h.id, h.name,
            format('host %s registered: %s vcpus, %s MiB, %s (session 1)',
                   h.name, h.cap_vcpus, h.cap_memory_mib, h.hypervisor), 'agent');
    ELSE
        was := h.state;
        UPDATE hosts SET address = coalesce(p->>'address', address),
               labels = coalesce(p->'labels', labels),
               cap_vcpus = (p->>'vcpus')::integer,
               cap_memory_mib = (p->>'memory_mib')::bigint,
               cap_disk_gib = (p->>'disk_gib')::bigint,
               hypervisor = p->>'hypervisor',
               arch = coalesce(nullif(p->>'arch', ''), arch),
               session_epoch = hosts.session_epoch + 1,
               state = CASE WHEN hosts.state = 'down' THEN 'ready' ELSE hosts.state END,
               last_seen = now(), version = version + 1, updated_at = now()
         WHERE id = h.id RETURNING * INTO h;
        PERFORM cloud_event('host.registered', 'host', h.id, h.name,
            format('host %s registered: %s vcpus, %s MiB, %s (session %s%s)',
                   h.name, h.cap_vcpus, h.cap_memory_mib, h.hypervisor, h.session_epoch,
                   CASE WHEN was = 'down' THEN ', was down' ELSE '' END), 'agent');
    END IF;
    host_id := h.id;
    session_epoch := h.session_epoch;
END $$;

-- p: [{"id": host id, "epoch": session epoch}, ...]. A host whose epoch
-- moved on (a newer session elsewhere) is skipped: its old session's
-- heartbeats prove nothing. Returns the number of hosts updated.
CREATE FUNCTION cloud_agent_heartbeats(p jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    h hosts;
    n integer;
BEGIN
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

-- One InstanceStatus, checked against the host's session epoch and the
-- instance's placement. Returns NULL when applied, else why it was refused.
-- s: {"host": host id, "epoch", "id", "generation", "state", "exit_code",
--     "reason", "started_ms", "finished_ms"}.
CREATE FUNCTION cloud_agent_status_one(s jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    h hosts;
    i instances;
    st text := s->>'state';
    code integer := (s->>'exit_code')::integer;
    why text := nullif(s->>'reason', '');
    msg text;
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
    IF i.state = st AND i.exit_code IS NOT DISTINCT FROM code
       AND i.reason IS NOT DISTINCT FROM why THEN
        RETURN NULL;  -- a repeat (after a reconnect): nothing changes
    END IF;
    UPDATE instances SET state = st, exit_code = code, reason = left(why, 4096),
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

-- Group commit of status reports: p is a JSON array of the objects above.
-- Rows come back only for refused reports (idx into p, and why). As with
-- cloud_batch, the fast path has no subtransactions; if it fails the
-- gateway sends the batch again with p_safe, where one report's error
-- refuses that report only.
CREATE FUNCTION cloud_agent_status(p jsonb, p_safe boolean)
RETURNS TABLE (idx integer, refused text)
LANGUAGE plpgsql AS $$
DECLARE
    item jsonb;
    i integer := 0;
    why text;
BEGIN
    FOR item IN SELECT value FROM jsonb_array_elements(p) LOOP
        IF NOT p_safe THEN
            why := cloud_agent_status_one(item);
        ELSE
            BEGIN
                why := cloud_agent_status_one(item);
            EXCEPTION WHEN OTHERS THEN
                why := SQLERRM;
            END;
        END IF;
        IF why IS NOT NULL THEN
            idx := i;
            refused := why;
            RETURN NEXT;
        END IF;
        i := i + 1;
    END LOOP;
END $$;
