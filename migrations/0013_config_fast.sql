-- 0013: status batches write guest-only changes set-based (issue 6, live
-- config for many instances; docs/benchmarks.md "Live config").
--
-- A config change acked by 100 guests arrives as 100 InstanceStatus reports
-- that change only the guest fields (config_version, ready, addresses).
-- 0004's cloud_agent_status ran 0009's cloud_agent_status_one per report:
-- one locked read, one UPDATE and one cloud_event() each, 0.5-1 ms apiece.
-- Now the reports that can only move the guest fields are written in one
-- UPDATE and their 'instance.guest' events (one per instance that changed,
-- the same message cloud_agent_status_one writes) in one INSERT ... SELECT;
-- every other report goes through cloud_agent_status_one as before, in
-- batch order.
--
-- A report takes the set path when: its instance appears once in the batch
-- (several reports of one instance keep their order in the slow path), the
-- host exists with that session epoch and holds the instance, the reported
-- state is starting/running/stopping and equals the stored one, the row has
-- no exit code and no reason (so the state columns cannot move), and the
-- report has the three guest keys. Same rules as cloud_agent_status_one:
-- the acked version never goes back, ready only while running, addresses
-- cleaned by cloud_addresses_clean; a report that changes nothing writes
-- nothing. In safe mode (the gateway's retry of a batch that failed) the
-- whole batch takes the slow path, each report in its own subtransaction.
--
-- Locks: the batch's instance rows first (in id order), then the event lock
-- (cloud_event's advisory lock), as cloud_agent_status_one does per row.

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
    IF NOT p_safe AND jsonb_typeof(p) = 'array' AND jsonb_array_length(p) > 0 THEN
        -- Row locks first: the next statement's snapshot sees the latest
        -- committed rows, and nobody moves them until commit.
        PERFORM 1 FROM instances
          WHERE id IN (SELECT e->>'id' FROM jsonb_array_elements(p) e)
          ORDER BY id FOR UPDATE;
        PERFORM pg_advisory_xact_lock(726200101);
        WITH items AS (
            SELECT (e.ord - 1)::integer AS k, e.value AS s
              FROM jsonb_array_elements(p) WITH ORDINALITY e(value, ord)),
        dup AS (
            SELECT s->>'id' AS id FROM items GROUP BY 1 HAVING count(*) > 1),
        cand AS (
            SELECT it.k, i.id, i.name, h.name AS host_name,
                   i.config_version AS old_cv, i.ready AS old_rdy,
                   i.addresses AS old_addrs,
                   greatest(i.config_version,
                            coalesce((it.s->>'config_version')::bigint, 0)) AS cv,
                   (it.s->>'state' = 'running'
                    AND coalesce((it.s->>'ready')::boolean, false)) AS rdy,
                   cloud_addresses_clean(it.s->'addresses') AS addrs
              FROM items it
              JOIN hosts h ON h.id = it.s->>'host'
              JOIN instances i ON i.id = it.s->>'id'
             WHERE jsonb_typeof(it.s) = 'object'
               AND NOT EXISTS (SELECT 1 FROM dup WHERE dup.id = it.s->>'id')
               AND h.session_epoch = (it.s->>'epoch')::bigint
               AND i.host_id = h.id
               AND it.s->>'state' IN ('starting', 'running', 'stopping')
               AND i.state = it.s->>'state'
               AND i.exit_code IS NULL AND i.reason IS NULL
               AND it.s ? 'config_version' AND it.s ? 'ready'
               AND it.s ? 'addresses'),
        upd AS (
            UPDATE instances i
               SET config_version = c.cv, ready = c.rdy, addresses = c.addrs,
                   version = i.version + 1, updated_at = now()
              FROM cand c
             WHERE i.id = c.id
               AND (c.old_cv, c.old_rdy, c.old_addrs)
                   IS DISTINCT FROM (c.cv, c.rdy, c.addrs)
            RETURNING c.k),
        ev AS (
            INSERT INTO events (type, object, object_id, name, message, actor)
            SELECT 'instance.guest', 'instance', c.id, c.name,
                   format('instance %s on %s: guest%s', c.name, c.host_name,
                          left(CASE WHEN c.old_cv <> c.cv THEN
                                   format(', config version %s acknowledged', c.cv)
                               ELSE '' END
                               || CASE WHEN c.old_rdy <> c.rdy THEN
                                   CASE WHEN c.rdy THEN ', ready' ELSE ', not ready' END
                               ELSE '' END
                               || CASE WHEN c.old_addrs <> c.addrs THEN
                                   format(', addresses %s',
                                          coalesce((SELECT string_agg(a, ' ')
                                                      FROM jsonb_array_elements_text(c.addrs) a),
                                                   'none'))
                               ELSE '' END, 1024)),
                   'agent'
              FROM cand c JOIN upd u ON u.k = c.k
             ORDER BY c.k
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
