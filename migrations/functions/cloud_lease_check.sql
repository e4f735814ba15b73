-- The fence: a reconciler write runs only while its epoch is current and
-- unexpired. It is a reconciler write's first statement, so it first takes
-- the event lock, before any row lock (docs/decisions.md §11). Then it
-- holds the lease lock (726200102) shared to its commit, so a takeover,
-- which takes that lock exclusively, waits for this transaction; it takes
-- no row lock, so the holder's renewal (an UPDATE of the lease row) never
-- waits for reconciler work (§21).
CREATE OR REPLACE FUNCTION cloud_lease_check(p_epoch bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    PERFORM pg_advisory_xact_lock_shared(726200102);
    PERFORM 1 FROM leader_lease
     WHERE id = 1 AND epoch = p_epoch AND expires_at > now();
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'CLEPC',
            MESSAGE = format('leader epoch %s is no longer current: this controller does not hold the lease', p_epoch);
    END IF;
END $$;
