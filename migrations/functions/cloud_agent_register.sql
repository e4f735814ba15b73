-- p: {"name","address","vcpus","memory_mib","disk_gib","hypervisor","arch",
--     "labels","running","underlay"}. Returns the host id and the new
-- session epoch. underlay: Hello.underlay_address, "" from an agent that
-- does not build the host network (docs/network.md).
--
-- running: the ids the agent's Hello reports running. A service instance
-- of this host that liveness marked lost but left wanted running
-- (partition_policy keep, cloud_rec_liveness) and that still runs is
-- taken back here, in the transaction that makes the host ready again, so
-- the reconciler never sees the host ready with it lost (it would retire
-- it, not running, before its replacement); its replacement is then one
-- too many and retired. One that no longer runs is retired (deleted, KILL).
CREATE OR REPLACE FUNCTION cloud_agent_register(p jsonb, OUT host_id text, OUT session_epoch bigint)
LANGUAGE plpgsql AS $$
DECLARE
    h hosts;
    i instances;
    was text;
BEGIN
    -- The event lock before any row lock (docs/decisions.md §11).
    PERFORM pg_advisory_xact_lock(726200101);
    SELECT * INTO h FROM hosts WHERE name = p->>'name' FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO hosts (id, name, address, state, labels, cap_vcpus, cap_memory_mib,
                           cap_disk_gib, hypervisor, arch, session_epoch, last_seen,
                           underlay_address)
        VALUES (cloud_new_id(), p->>'name', coalesce(p->>'address', ''), 'ready',
                coalesce(p->'labels', '{}'), (p->>'vcpus')::integer,
                (p->>'memory_mib')::bigint, (p->>'disk_gib')::bigint,
                p->>'hypervisor', coalesce(nullif(p->>'arch', ''), 'x86_64'), 1, now(),
                coalesce(p->>'underlay', ''))
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
               underlay_address = coalesce(p->>'underlay', ''),
               session_epoch = hosts.session_epoch + 1,
               state = CASE WHEN hosts.state = 'down' THEN 'ready' ELSE hosts.state END,
               last_seen = now(), version = version + 1, updated_at = now()
         WHERE id = h.id RETURNING * INTO h;
        PERFORM cloud_event('host.registered', 'host', h.id, h.name,
            format('host %s registered: %s vcpus, %s MiB, %s (session %s%s)',
                   h.name, h.cap_vcpus, h.cap_memory_mib, h.hypervisor, h.session_epoch,
                   CASE WHEN was = 'down' THEN ', was down' ELSE '' END), 'agent');
    END IF;
    -- its subnet (IPAM): a new host got one with its row; one the
    -- cluster CIDR had no room for tries again (docs/network.md)
    PERFORM cloud_host_subnet_alloc(h.id);
    FOR i IN UPDATE instances
                SET state = 'running', reason = NULL, exit_code = NULL, finished_at = NULL,
                    version = version + 1, updated_at = now()
              WHERE instances.host_id = h.id AND instances.state = 'lost'
                AND instances.desired_state = 'running' AND instances.service_id IS NOT NULL
                AND instances.id IN (SELECT jsonb_array_elements_text(
                                         CASE WHEN jsonb_typeof(p->'running') = 'array'
                                              THEN p->'running' ELSE '[]' END))
             RETURNING * LOOP
        PERFORM cloud_event('instance.state', 'instance', i.id, i.name,
            format('instance %s running on %s: re-adopted, its host is back '
                   '(partition_policy keep)', i.name, h.name), 'agent');
    END LOOP;
    FOR i IN UPDATE instances
                SET desired_state = 'deleted', stop_signal = 'KILL',
                    version = version + 1, updated_at = now()
              WHERE instances.host_id = h.id AND instances.state = 'lost'
                AND instances.desired_state = 'running' AND instances.service_id IS NOT NULL
             RETURNING * LOOP
        PERFORM cloud_event('instance.deleting', 'instance', i.id, i.name,
            format('instance %s retired: not running on %s when its host came back',
                   i.name, h.name), 'agent');
    END LOOP;
    host_id := h.id;
    session_epoch := h.session_epoch;
END $$;
