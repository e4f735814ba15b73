-- The fence: a reconciler write runs only while its epoch is current and
-- unexpired. The share lock makes a takeover wait for this transaction.
-- It is a reconciler write's first statement, so it first takes the event
-- lock, before any row lock (docs/decisions.md §11).
CREATE OR REPLACE FUNCTION cloud_lease_check(p_epoch bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    PERFORM 1 FROM leader_lease
     WHERE id = 1 AND epoch = p_epoch AND expires_at > now() FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'CLEPC',
            MESSAGE = format('leader epoch %s is no longer current: this controller does not hold the lease', p_epoch);
    END IF;
END $$;
