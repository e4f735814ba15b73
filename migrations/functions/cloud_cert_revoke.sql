-- Revokes one certificate by serial, or every certificate of a host. An
-- unknown serial is recorded as revoked (an out-of-band certificate).
-- Returns the number of certificates newly revoked.
CREATE OR REPLACE FUNCTION cloud_cert_revoke(p_serial text, p_host text, p_actor text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    -- The event lock before any row lock (docs/decisions.md §11).
    PERFORM pg_advisory_xact_lock(726200101);
    IF p_serial IS NOT NULL THEN
        INSERT INTO agent_certs (serial, revoked_at) VALUES (p_serial, now())
        ON CONFLICT (serial) DO UPDATE SET revoked_at = coalesce(agent_certs.revoked_at, now())
        WHERE agent_certs.revoked_at IS NULL;
        GET DIAGNOSTICS n = ROW_COUNT;
    ELSE
        UPDATE agent_certs SET revoked_at = now()
         WHERE host_name = p_host AND revoked_at IS NULL;
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    IF n > 0 THEN
        PERFORM cloud_event('host.cert_revoked', 'host', NULL, coalesce(p_host, p_serial),
            format('%s certificate(s) of %s revoked', n,
                   coalesce('host ' || p_host, 'serial ' || p_serial)), p_actor);
    END IF;
    RETURN n;
END $$;
