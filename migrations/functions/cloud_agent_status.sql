-- An agent's status batch: p is an array of reports {id, host, epoch,
-- state, exit_code, reason, addresses, config_version, ready}; returns the
-- index and reason of every report refused (a stale epoch, an instance
-- not on that host). The fast path (p_safe false) takes guest-only
-- changes, state transitions and removals in a few set statements: the
-- reports are unpacked into typed columns once, instances are found by id, the UPDATE returns what the event needs, and
-- addresses equal to the stored (already clean) ones skip
-- cloud_addresses_clean (a batch of 100 acks took 13 ms with joins
-- through instances_host, docs/benchmarks.md). The slow path goes report
-- by report through cloud_agent_status_one, each in its own
-- subtransaction.
CREATE OR REPLACE FUNCTION cloud_agent_status(p jsonb, p_safe boolean)
RETURNS TABLE (idx integer, refused text)
LANGUAGE plpgsql AS $$
DECLARE
    item jsonb;
    k integer;
    why text;
    done integer[] := '{}';
    last_ev bigint;
    taken bigint;
BEGIN
    -- The event lock before any row lock (docs/decisions.md §11).
    PERFORM pg_advisory_xact_lock(726200101);
    IF NOT p_safe AND jsonb_typeof(p) = 'array' AND jsonb_array_length(p) > 0 THEN
        -- Row locks first: the next statement's snapshot sees the latest
        -- committed rows, and nobody moves them until commit.
        PERFORM 1 FROM instances
          WHERE id IN (SELECT e->>'id' FROM jsonb_array_elements(p) e)
          ORDER BY id FOR UPDATE;
        WITH items AS MATERIALIZED (
            SELECT (e.ord - 1)::integer AS k, e.value->>'id' AS id,
                   e.value->>'host' AS host, e.value->>'epoch' AS epoch,
                   e.value->>'state' AS state,
                   coalesce((e.value->>'config_version')::bigint, 0) AS cv,
                   coalesce((e.value->>'ready')::boolean, false) AS rdy,
                   e.value->'addresses' AS addrs
              FROM jsonb_array_elements(p) WITH ORDINALITY e(value, ord)
             WHERE jsonb_typeof(e.value) = 'object'
               AND e.value ? 'config_version' AND e.value ? 'ready'
               AND e.value ? 'addresses'
               AND e.value->>'state' IN ('starting', 'running', 'stopping')),
        dup AS (
            SELECT e->>'id' AS id FROM jsonb_array_elements(p) e
             GROUP BY 1 HAVING count(*) > 1),
        cand AS MATERIALIZED (
            SELECT it.k, i.id, i.name, h.name AS host_name,
                   i.config_version AS old_cv, i.ready AS old_rdy,
                   i.addresses AS old_addrs,
                   greatest(i.config_version, it.cv) AS cv,
                   (it.state = 'running' AND it.rdy) AS rdy,
                   CASE WHEN it.addrs = i.addresses THEN i.addresses
                        ELSE cloud_addresses_clean(it.addrs) END AS addrs
              FROM items it
              JOIN instances i ON i.id = it.id
              JOIN hosts h ON h.id = i.host_id
             WHERE h.id = it.host
               AND h.session_epoch = it.epoch::bigint
               AND i.state = it.state
               AND i.exit_code IS NULL AND i.reason IS NULL
               AND NOT EXISTS (SELECT 1 FROM dup WHERE dup.id = it.id)),
        upd AS (
            UPDATE instances i
               SET config_version = c.cv, ready = c.rdy, addresses = c.addrs,
                   version = i.version + 1, updated_at = now()
              FROM cand c
             WHERE i.id = c.id
               AND (c.old_cv, c.old_rdy, c.old_addrs)
                   IS DISTINCT FROM (c.cv, c.rdy, c.addrs)
            RETURNING c.k, c.id, c.name, c.host_name, c.old_cv, c.cv,
                      c.old_rdy, c.rdy, c.old_addrs, c.addrs),
        ev AS (
            INSERT INTO events (type, object, object_id, name, message, actor)
            SELECT 'instance.guest', 'instance', u.id, u.name,
                   format('instance %s on %s: guest%s', u.name, u.host_name,
                          left(CASE WHEN u.old_cv <> u.cv THEN
                                   format(', config version %s acknowledged', u.cv)
                               ELSE '' END
                               || CASE WHEN u.old_rdy <> u.rdy THEN
                                   CASE WHEN u.rdy THEN ', ready' ELSE ', not ready' END
                               ELSE '' END
                               || CASE WHEN u.old_addrs <> u.addrs THEN
                                   format(', addresses %s',
                                          coalesce((SELECT string_agg(a, ' ')
                                                      FROM jsonb_array_elements_text(u.addrs) a),
                                                   'none'))
                               ELSE '' END, 1024)),
                   'agent'
              FROM upd u
             ORDER BY u.k
            RETURNING id)
        SELECT coalesce((SELECT array_agg(c.k) FROM cand c), '{}'),
               (SELECT max(id) FROM ev)
          INTO done, last_ev;
        -- State transitions and removals, set-based in the same way, in
        -- rounds until one takes nothing: each round takes the first report
        -- not taken yet of every instance, so a batch holding stopping,
        -- exited and removed of one instance takes them in that order, and
        -- an instance whose first report is left to the slow path leaves
        -- the rest with it. A transition is a new state (or exit code, or
        -- reason) of an instance on that host, in that session; a removal
        -- is an instance being deleted reported removed. The same values
        -- and events as cloud_agent_status_one; what this leaves (refusals,
        -- repeats, old-gateway reports) goes the slow way. Scaling 100,000
        -- instances, the status path one report at a time was the largest
        -- cost in PostgreSQL (issue 13).
        LOOP
            WITH firsts AS (
                SELECT DISTINCT ON (e.value->>'id') (e.ord - 1)::integer AS k
                  FROM jsonb_array_elements(p) WITH ORDINALITY e(value, ord)
                 WHERE NOT ((e.ord - 1)::integer = ANY(done))
                 ORDER BY e.value->>'id', e.ord),
            items AS MATERIALIZED (
                SELECT (e.ord - 1)::integer AS k, e.value->>'id' AS id,
                       e.value->>'host' AS host, (e.value->>'epoch')::bigint AS epoch,
                       e.value->>'state' AS st, e.value->>'exit_code' AS code_t,
                       nullif(e.value->>'reason', '') AS why_t,
                       coalesce((e.value->>'config_version')::bigint, 0) AS cv,
                       coalesce((e.value->>'ready')::boolean, false) AS rdy,
                       e.value->'addresses' AS addrs,
                       nullif((e.value->>'started_ms')::bigint, 0) AS sms,
                       nullif((e.value->>'finished_ms')::bigint, 0) AS fms
                  FROM jsonb_array_elements(p) WITH ORDINALITY e(value, ord)
                 WHERE (e.ord - 1)::integer IN (SELECT f.k FROM firsts f)
                   AND jsonb_typeof(e.value) = 'object'
                   AND (e.value->>'state' = 'removed' OR
                        (e.value ? 'config_version' AND e.value ? 'ready'
                         AND e.value ? 'addresses'
                         AND e.value->>'state' IN ('starting', 'running', 'stopping',
                                                   'exited', 'failed')))),
            norm AS (
                -- An exit code only for exited and failed, 255 when out of
                -- range, none for a failure with 0; a reason only with them.
                SELECT it.*,
                       CASE WHEN it.st IN ('exited', 'failed') THEN
                           CASE WHEN it.code_t::integer < 0 OR it.code_t::integer > 255 THEN 255
                                WHEN it.st = 'failed' AND it.code_t::integer = 0 THEN NULL
                                ELSE it.code_t::integer END
                       END AS code,
                       CASE WHEN it.st IN ('exited', 'failed') THEN it.why_t END AS why
                  FROM items it),
            cand AS MATERIALIZED (
                SELECT n.k, n.st, n.code, n.why, n.sms, n.fms, i.id, i.name,
                       h.name AS host_name,
                       greatest(i.config_version, n.cv) AS cv,
                       (n.st = 'running' AND n.rdy) AS rdy,
                       CASE WHEN n.st = 'removed' OR n.addrs = i.addresses THEN i.addresses
                            ELSE cloud_addresses_clean(n.addrs) END AS addrs
                  FROM norm n
                  JOIN instances i ON i.id = n.id
                  JOIN hosts h ON h.id = i.host_id
                 WHERE h.id = n.host AND h.session_epoch = n.epoch
                   AND CASE WHEN n.st = 'removed' THEN i.desired_state = 'deleted'
                            ELSE (i.state, i.exit_code, i.reason)
                                 IS DISTINCT FROM (n.st, n.code, n.why) END),
            del AS (
                DELETE FROM instances i USING cand c
                 WHERE i.id = c.id AND c.st = 'removed'
                RETURNING c.k, c.id, c.name, c.host_name, c.st, c.code, c.why),
            upd AS (
                UPDATE instances i
                   SET state = c.st, exit_code = c.code, reason = left(c.why, 4096),
                       config_version = c.cv, ready = c.rdy, addresses = c.addrs,
                       started_at = CASE WHEN c.st = 'running' THEN
                                        coalesce(to_timestamp(c.sms / 1000.0), i.started_at, now())
                                    ELSE i.started_at END,
                       finished_at = CASE WHEN c.st IN ('exited', 'failed') THEN
                                         coalesce(to_timestamp(c.fms / 1000.0), now())
                                     WHEN c.st IN ('starting', 'running') THEN NULL
                                     ELSE i.finished_at END,
                       version = i.version + 1, updated_at = now()
                  FROM cand c
                 WHERE i.id = c.id AND c.st <> 'removed'
                RETURNING c.k, c.id, c.name, c.host_name, c.st, c.code, c.why),
            ev AS (
                INSERT INTO events (type, object, object_id, name, message, actor)
                SELECT CASE WHEN u.st = 'removed' THEN 'instance.deleted'
                            ELSE 'instance.state' END,
                       'instance', u.id, u.name,
                       CASE u.st
                       WHEN 'removed' THEN format('instance %s deleted: removed from %s',
                                                  u.name, u.host_name)
                       WHEN 'exited' THEN format('instance %s exited (%s) on %s', u.name,
                                                 coalesce(u.code::text, '?'), u.host_name)
                       WHEN 'failed' THEN format('instance %s failed on %s', u.name, u.host_name)
                       ELSE format('instance %s %s on %s', u.name, u.st, u.host_name) END
                       || CASE WHEN u.why IS NOT NULL THEN ': ' || left(u.why, 512) ELSE '' END,
                       'agent'
                  FROM (SELECT * FROM upd UNION ALL SELECT * FROM del) u
                 ORDER BY u.k
                RETURNING id)
            SELECT done || coalesce((SELECT array_agg(c.k) FROM cand c), '{}'),
                   greatest(last_ev, (SELECT max(id) FROM ev)), (SELECT count(*) FROM cand)
              INTO done, last_ev, taken;
            EXIT WHEN taken = 0;
        END LOOP;
        IF last_ev IS NOT NULL THEN
            PERFORM set_config('cloud.last_event', last_ev::text, true);
        END IF;
    END IF;
    FOR item, k IN SELECT e.value, (e.ord - 1)::integer
                     FROM jsonb_array_elements(p) WITH ORDINALITY e(value, ord)
                    WHERE NOT ((e.ord - 1)::integer = ANY(done))
                    ORDER BY e.ord LOOP
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
            idx := k;
            refused := why;
            RETURN NEXT;
        END IF;
    END LOOP;
END $$;
