-- Renews the caller's lease with one conditional UPDATE on the database's
-- clock, or takes over an expired (or its own, after it stopped acting)
-- lease, bumping the epoch. No row: another controller holds a live lease.
-- A renewal takes no lock but the lease row's, which no other transaction
-- holds for long: it never queues behind reconciler batches or API writes
-- (docs/decisions.md §21). A takeover writes an event, so it takes the
-- event lock first (§11), then the lease lock exclusively: it waits for
-- every reconciler transaction of the old epoch that passed its fence.
CREATE OR REPLACE FUNCTION cloud_lease_acquire(p_holder text, p_epoch bigint, p_secs integer)
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
    -- The event lock before any row lock (§11), then the lease lock.
    PERFORM pg_advisory_xact_lock(726200101);
    PERFORM pg_advisory_xact_lock(726200102);
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
