-- 0003: the reconciler's writes (controller/reconcile.c, controller/leader.c)
-- and the cluster settings it reads (controller/api_cluster.c).
--
-- Every reconciler write goes through cloud_reconcile() or
-- cloud_rec_liveness(), which first check the leader epoch under a share
-- lock of the lease row: a deposed leader's write fails (SQLSTATE CLEPC) and
-- a takeover waits until a write in flight has committed. Each change to an
-- instance, service or host appends its event in the same transaction, with
-- the reason. See docs/reconciler.md.

CREATE TABLE cluster_settings (
    id                  integer PRIMARY KEY CHECK (id = 1),
    down_after_seconds  integer NOT NULL DEFAULT 30
                        CHECK (down_after_seconds BETWEEN 5 AND 3600),
    version             bigint NOT NULL DEFAULT 1,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO cluster_settings (id) VALUES (1);

CREATE FUNCTION cloud_ms(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT (extract(epoch FROM t) * 1000)::bigint
$$;

CREATE FUNCTION cloud_settings_json(s cluster_settings) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('down_after_seconds', s.down_after_seconds,
        'version', s.version, 'updated_at', cloud_ts(s.updated_at))
$$;

-- p: {"down_after_seconds": N} (validated by the controller; the CHECK is
-- the last line). An empty patch changes nothing.
CREATE FUNCTION cloud_settings_patch(p jsonb, p_if_match bigint, p_actor text,
                                     OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    s cluster_settings;
    n cluster_settings;
BEGIN
    SELECT * INTO s FROM cluster_settings WHERE id = 1 FOR UPDATE;
    IF p_if_match IS NOT NULL AND s.version <> p_if_match THEN
        PERFORM cloud_raise('CL412', format('cluster settings are at version %s, not %s',
                                            s.version, p_if_match));
    END IF;
    IF NOT p ? 'down_after_seconds'
       OR (p->>'down_after_seconds')::integer = s.down_after_seconds THEN
        status := 200;
        body := cloud_settings_json(s);
        RETURN;
    END IF;
    UPDATE cluster_settings SET down_after_seconds = (p->>'down_after_seconds')::integer,
           version = version + 1, updated_at = now()
     WHERE id = 1 RETURNING * INTO n;
    PERFORM cloud_event('controller.settings', 'controller', NULL, 'cluster',
        format('cluster settings updated: down_after_seconds %s -> %s',
               s.down_after_seconds, n.down_after_seconds), p_actor);
    status := 200;
    body := cloud_settings_json(n);
END $$;

-- ---- the lease ------------------------------------------------------------

-- Renews the caller's lease with one conditional UPDATE on the database's
-- clock, or takes over an expired (or its own, after it stopped acting)
-- lease, bumping the epoch. No row: another controller holds a live lease.
CREATE FUNCTION cloud_lease_acquire(p_holder text, p_epoch bigint, p_secs integer)
RETURNS TABLE (epoch bigint, now_ms bigint, took_over boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    e bigint;
    prev text;
    prev_exp timestamptz;
BEGIN
    UPDATE leader_lease SET expires_at = now() + make_interval(secs => p_secs)
     WHERE id = 1 AND holder = p_holder AND leader_lease.epoch = p_epoch
       AND expires_at > now()
    RETURNING leader_lease.epoch INTO e;
    IF FOUND THEN
        epoch := e;
        now_ms := cloud_ms(now());
        took_over := false;
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT holder, expires_at INTO prev, prev_exp FROM leader_lease WHERE id = 1;
    UPDATE leader_lease SET holder = p_holder, epoch = leader_lease.epoch + 1,
           expires_at = now() + make_interval(secs => p_secs)
     WHERE id = 1 AND (holder IS NULL OR expires_at IS NULL OR expires_at <= now()
                       OR holder = p_holder)
    RETURNING leader_lease.epoch INTO e;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM cloud_event('controller.elected', 'controller', p_holder, p_holder,
        format('controller %s is the leader (epoch %s)%s', p_holder, e,
               CASE WHEN prev IS NULL THEN ''
                    WHEN prev = p_holder THEN ': it renews a lease it had stopped acting on'
                    ELSE format(': the lease of %s expired %s s ago', prev,
                                round(extract(epoch FROM now() - coalesce(prev_exp, now()))::numeric, 1))
                    END),
        'reconciler/' || p_holder);
    epoch := e;
    now_ms := cloud_ms(now());
    took_over := true;
    RETURN NEXT;
END $$;

-- The fence: a reconciler write runs only while its epoch is current and
-- unexpired. The share lock makes a takeover wait for this transaction.
CREATE FUNCTION cloud_lease_check(p_epoch bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM leader_lease
     WHERE id = 1 AND epoch = p_epoch AND expires_at > now() FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'CLEPC',
            MESSAGE = format('leader epoch %s is no longer current: this controller does not hold the lease', p_epoch);
    END IF;
END $$;

-- ---- host liveness ----------------------------------------------------------

-- Marks down every registered host (session_epoch > 0: a host no agent
-- ever registered has no heartbeat to miss) silent for down_after, where silence is measured
-- from the latest of its last heartbeat, its creation and the start of the
-- caller's term (p_since_ms, on the database clock): a new leader never
-- declares a host down before it has itself watched it for down_after.
-- The host's instances become lost; those of services get desired state
-- deleted (their service replaces them), one-offs keep theirs (their restart
-- policy decides). Returns what changed, for the caller to re-read.
CREATE FUNCTION cloud_rec_liveness(p_epoch bigint, p_actor text, p_since_ms bigint)
RETURNS TABLE (kind text, id text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    da integer;
    since timestamptz := to_timestamp(p_since_ms / 1000.0);
    h hosts;
    i instances;
    silent integer;
BEGIN
    PERFORM cloud_lease_check(p_epoch);
    SELECT down_after_seconds INTO da FROM cluster_settings WHERE cluster_settings.id = 1;
    FOR h IN SELECT * FROM hosts
              WHERE state <> 'down' AND session_epoch > 0
                AND greatest(coalesce(last_seen, created_at), created_at, since)
                    < now() - make_interval(secs => da)
              ORDER BY hosts.id FOR UPDATE LOOP
        silent := floor(extract(epoch FROM now() - coalesce(h.last_seen, h.created_at)));
        UPDATE hosts SET state = 'down', version = version + 1, updated_at = now()
         WHERE hosts.id = h.id;
        PERFORM cloud_event('host.down', 'host', h.id, h.name,
            format('host %s down: no heartbeat for %s s', h.name, silent), p_actor);
        kind := 'host';
        id := h.id;
        RETURN NEXT;
        FOR i IN UPDATE instances SET state = 'lost',
                        reason = format('host %s down: no heartbeat for %s s', h.name, silent),
                        desired_state = CASE WHEN service_id IS NOT NULL THEN 'deleted'
                                             ELSE desired_state END,
                        stop_signal = CASE WHEN service_id IS NOT NULL
                                           THEN coalesce(stop_signal, 'KILL')
                                           ELSE stop_signal END,
                        finished_at = now(), version = version + 1, updated_at = now()
                  WHERE host_id = h.id AND state NOT IN ('exited', 'failed', 'lost')
                 RETURNING * LOOP
            PERFORM cloud_event('instance.lost', 'instance', i.id, i.name,
                format('instance %s lost with host %s%s', i.name, h.name,
                       CASE WHEN i.service_id IS NOT NULL
                            THEN format(': service %s replaces it',
                                        (SELECT name FROM services WHERE services.id = i.service_id))
                            ELSE '' END), p_actor);
            kind := 'instance';
            id := i.id;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END $$;

-- ---- the reconciler's batch ----------------------------------------------

-- op create: {service, version, reason}. A new pending instance of the
-- service at its current spec and generation, named <service>-<ordinal>
-- with the lowest ordinal (and name) no live instance uses. Skipped when the
-- service changed since the caller looked (version).
CREATE FUNCTION cloud_rec_create(a jsonb, p_actor text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    s services;
    i instances;
    o integer;
    nm text;
BEGIN
    SELECT * INTO s FROM services WHERE id = a->>'service' FOR UPDATE;
    IF NOT FOUND OR s.version <> (a->>'version')::bigint OR s.state <> 'active' THEN
        RETURN NULL;
    END IF;
    FOR attempt IN 1..3 LOOP
        SELECT g INTO o FROM generate_series(1, 20001) g
         WHERE NOT EXISTS (SELECT 1 FROM instances x
                            WHERE x.service_id = s.id AND x.ordinal = g
                              AND x.desired_state <> 'deleted')
           AND NOT EXISTS (SELECT 1 FROM instances x
                            WHERE x.name = s.name || '-' || g
                              AND x.desired_state <> 'deleted')
         LIMIT 1;
        nm := s.name || '-' || o;
        INSERT INTO instances (id, name, service_id, ordinal, generation, image, vcpus,
                               memory_mib, disk_gib, args, env, restart, constraints,
                               strategy, max_per_host)
        VALUES (cloud_new_id(), nm, s.id, o, s.generation, s.image, s.vcpus, s.memory_mib,
                s.disk_gib, s.args, s.env, s.restart, s.constraints, s.strategy,
                s.max_per_host)
        ON CONFLICT DO NOTHING
        RETURNING * INTO i;
        IF FOUND THEN
            PERFORM cloud_event('instance.created', 'instance', i.id, i.name,
                format('instance %s created (generation %s): %s', i.name, i.generation,
                       a->>'reason'), p_actor);
            RETURN i.id;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

-- op retire: {id, version, reason}. Unplaced or finished instances go now
-- (as the API deletes them); the others get desired state deleted.
CREATE FUNCTION cloud_rec_retire(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    SELECT * INTO i FROM instances WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR i.version <> (a->>'version')::bigint OR i.desired_state = 'deleted' THEN
        RETURN;
    END IF;
    IF i.host_id IS NULL OR i.state IN ('exited', 'failed', 'lost') THEN
        DELETE FROM instances WHERE id = i.id;
        PERFORM cloud_event('instance.deleted', 'instance', i.id, i.name,
            format('instance %s deleted: %s', i.name, a->>'reason'), p_actor);
    ELSE
        UPDATE instances SET desired_state = 'deleted',
               stop_signal = coalesce(stop_signal, 'TERM'),
               version = version + 1, updated_at = now()
         WHERE id = i.id;
        PERFORM cloud_event('instance.deleting', 'instance', i.id, i.name,
            format('instance %s: deleting: %s', i.name, a->>'reason'), p_actor);
    END IF;
END $$;

-- op purge: {id, version}. A deleted instance that holds nothing any more
-- (never placed, finished, or lost with its host) is removed.
CREATE FUNCTION cloud_rec_purge(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    SELECT * INTO i FROM instances WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR i.version <> (a->>'version')::bigint OR i.desired_state <> 'deleted'
       OR NOT (i.host_id IS NULL OR i.state IN ('exited', 'failed', 'lost')) THEN
        RETURN;
    END IF;
    DELETE FROM instances WHERE id = i.id;
    PERFORM cloud_event('instance.deleted', 'instance', i.id, i.name,
        format('instance %s deleted: %s', i.name,
               CASE WHEN i.host_id IS NULL THEN 'it was never placed'
                    WHEN i.state = 'lost' THEN 'lost with its host'
                    ELSE 'it stopped after it was retired' END), p_actor);
END $$;

-- op place: {id, version, host}. Skipped unless the instance is still
-- pending, unplaced, wanted running and out of its restart back-off, and
-- the host still ready.
CREATE FUNCTION cloud_rec_place(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
    h hosts;
BEGIN
    SELECT * INTO i FROM instances WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR i.version <> (a->>'version')::bigint OR i.state <> 'pending'
       OR i.host_id IS NOT NULL OR i.desired_state <> 'running'
       OR coalesce(i.next_restart_at <= now(), true) IS NOT TRUE THEN
        RETURN;
    END IF;
    SELECT * INTO h FROM hosts WHERE id = a->>'host';
    IF NOT FOUND OR h.state <> 'ready' THEN
        RETURN;
    END IF;
    -- next_restart_at stays: when the last back-off ended (a record).
    UPDATE instances SET state = 'scheduled', host_id = h.id, pending_reason = NULL,
           version = version + 1, updated_at = now()
     WHERE id = i.id;
    PERFORM cloud_event('instance.scheduled', 'instance', i.id, i.name,
        format('instance %s scheduled on %s', i.name, h.name), p_actor);
END $$;

-- op unplaceable: {id, version, reason}: the scheduler's explanation.
CREATE FUNCTION cloud_rec_unplaceable(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    SELECT * INTO i FROM instances WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR i.version <> (a->>'version')::bigint OR i.state <> 'pending'
       OR i.pending_reason IS NOT DISTINCT FROM left(a->>'reason', 4096) THEN
        RETURN;
    END IF;
    UPDATE instances SET pending_reason = left(a->>'reason', 4096),
           version = version + 1, updated_at = now()
     WHERE id = i.id;
    PERFORM cloud_event('instance.unschedulable', 'instance', i.id, i.name,
        format('instance %s cannot be placed: %s', i.name, left(a->>'reason', 1024)), p_actor);
END $$;

-- op restart: {id, version}. The restart policy said yes: the instance goes
-- back to pending (same id and name, unplaced) with restart_count + 1 and
-- an exponential back-off on the database clock: 1 s doubling per restart,
-- at most 300 s, back to 1 s after a run of 10 minutes or more.
CREATE FUNCTION cloud_rec_restart(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
    attempt integer;
    backoff integer;
    why text;
BEGIN
    SELECT * INTO i FROM instances WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR i.version <> (a->>'version')::bigint OR i.desired_state <> 'running'
       OR i.state NOT IN ('exited', 'failed', 'lost') THEN
        RETURN;
    END IF;
    attempt := i.restart_count + 1;
    IF i.started_at IS NOT NULL AND i.finished_at IS NOT NULL
       AND i.finished_at - i.started_at >= interval '10 minutes' THEN
        backoff := 1;
    ELSE
        backoff := least(300, power(2, least(i.restart_count, 9))::integer);
    END IF;
    why := CASE i.state
        WHEN 'exited' THEN format('exit %s', coalesce(i.exit_code::text, '?'))
        WHEN 'failed' THEN 'failure' || coalesce(': ' || left(i.reason, 256), '')
        ELSE 'loss' || coalesce(': ' || left(i.reason, 256), '') END;
    why := format('restarting after %s (attempt %s, back-off %s s)', why, attempt, backoff);
    UPDATE instances SET state = 'pending', host_id = NULL, exit_code = NULL, reason = NULL,
           stop_signal = NULL, started_at = NULL, finished_at = NULL,
           restart_count = attempt, next_restart_at = now() + make_interval(secs => backoff),
           pending_reason = why, version = version + 1, updated_at = now()
     WHERE id = i.id;
    PERFORM cloud_event('instance.restarting', 'instance', i.id, i.name,
        format('instance %s %s', i.name, why), p_actor);
END $$;

-- op service_remove: {id, version}: a deleting service whose last instance
-- is gone.
CREATE FUNCTION cloud_rec_service_remove(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s services;
BEGIN
    SELECT * INTO s FROM services WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR s.version <> (a->>'version')::bigint OR s.state <> 'deleting'
       OR EXISTS (SELECT 1 FROM instances WHERE service_id = s.id) THEN
        RETURN;
    END IF;
    DELETE FROM services WHERE id = s.id;
    PERFORM cloud_event('service.deleted', 'service', s.id, s.name,
        format('service %s deleted: its last instance is gone', s.name), p_actor);
END $$;

-- op drained: {id, version}: a draining host with no service instance left
-- that holds resources.
CREATE FUNCTION cloud_rec_drained(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    h hosts;
BEGIN
    SELECT * INTO h FROM hosts WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR h.version <> (a->>'version')::bigint OR h.state <> 'draining'
       OR EXISTS (SELECT 1 FROM instances WHERE host_id = h.id AND service_id IS NOT NULL
                     AND state NOT IN ('exited', 'failed', 'lost')) THEN
        RETURN;
    END IF;
    UPDATE hosts SET state = 'drained', version = version + 1, updated_at = now()
     WHERE id = h.id;
    PERFORM cloud_event('host.drained', 'host', h.id, h.name,
        format('host %s drained: its service instances run elsewhere', h.name), p_actor);
END $$;

-- One batch of reconciler decisions: p is a JSON array of
-- {"op": ..., ...}. One transaction, one NOTIFY, the epoch checked first.
-- Each op re-checks its object's version and state and quietly does nothing
-- when they moved on (the caller re-reads what it returns and decides
-- again). Returns the objects to re-read.
CREATE FUNCTION cloud_reconcile(p_epoch bigint, p_actor text, p jsonb)
RETURNS TABLE (kind text, id text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    a jsonb;
    nid text;
BEGIN
    PERFORM cloud_lease_check(p_epoch);
    FOR a IN SELECT value FROM jsonb_array_elements(p) LOOP
        CASE a->>'op'
        WHEN 'create' THEN
            nid := cloud_rec_create(a, p_actor);
            IF nid IS NOT NULL THEN
                kind := 'instance';
                id := nid;
                RETURN NEXT;
            END IF;
            kind := 'service';
            id := a->>'service';
            RETURN NEXT;
            CONTINUE;
        WHEN 'retire' THEN
            PERFORM cloud_rec_retire(a, p_actor);
        WHEN 'purge' THEN
            PERFORM cloud_rec_purge(a, p_actor);
        WHEN 'place' THEN
            PERFORM cloud_rec_place(a, p_actor);
        WHEN 'unplaceable' THEN
            PERFORM cloud_rec_unplaceable(a, p_actor);
        WHEN 'restart' THEN
            PERFORM cloud_rec_restart(a, p_actor);
        WHEN 'service_remove' THEN
            PERFORM cloud_rec_service_remove(a, p_actor);
            kind := 'service';
            id := a->>'id';
            RETURN NEXT;
            CONTINUE;
        WHEN 'drained' THEN
            PERFORM cloud_rec_drained(a, p_actor);
            kind := 'host';
            id := a->>'id';
            RETURN NEXT;
            CONTINUE;
        WHEN 'event' THEN
            -- A decision that changes no row (rollout progress, a restart
            -- policy that says no): the event is the record.
            PERFORM cloud_event(a->>'type', a->>'object', a->>'id', a->>'name',
                                a->>'message', p_actor);
            CONTINUE;
        ELSE
            PERFORM cloud_raise('CL422', format('unknown reconciler operation %s', a->>'op'));
        END CASE;
        kind := 'instance';
        id := a->>'id';
        RETURN NEXT;
    END LOOP;
END $$;
