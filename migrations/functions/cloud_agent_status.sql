-- An agent's status batch: p is an array of reports {id, host, epoch,
-- state, exit_code, reason, addresses, config_version, ready}; returns the
-- index and reason of every report refused (a stale epoch, an instance
-- not on that host). The fast path (p_safe false) takes every report in a
-- few set statements: the reports are unpacked into typed columns once,
-- instances are found by id, the UPDATE returns what the event needs, and
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
