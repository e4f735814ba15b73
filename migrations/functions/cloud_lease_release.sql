-- A leader that shuts down gives its lease up (SIGTERM; docs/reconciler.md
-- "Leadership"): the lease ends now, so a successor takes over at its next
-- try instead of after a whole lease, and controller.released tells every
-- replica's reconciler to try at once. The successor's takeover still
-- takes the lease lock exclusively (cloud_lease_acquire): it waits for any
-- write of this epoch that passed its fence. True when the caller held the
-- lease at p_epoch; false (and nothing written) otherwise.
CREATE OR REPLACE FUNCTION cloud_lease_release(p_holder text, p_epoch bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    -- The event lock before any row lock (docs/decisions.md §11).
    PERFORM pg_advisory_xact_lock(726200101);
    UPDATE leader_lease SET expires_at = now()
     WHERE id = 1 AND holder = p_holder AND epoch = p_epoch AND expires_at > now();
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM cloud_event('controller.released', 'controller', p_holder, p_holder,
        format('controller %s gave up the lease (epoch %s): shutting down', p_holder, p_epoch),
        'reconciler/' || p_holder);
    RETURN true;
END $$;
