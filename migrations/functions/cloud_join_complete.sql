-- Consumes a join token and records the certificate signed for it, in one
-- transaction: a refusal (unknown, used or expired token, or a host name
-- that an unrevoked certificate on record speaks for) records nothing, and a token can be used by
-- one join only (the row lock serialises two joins racing for it). Returns
-- NULL on success, else the reason (one sentence, no secret in it).
CREATE OR REPLACE FUNCTION cloud_join_complete(p_id text, p_sha256_hex text, p_host text, p_serial text,
                                    p_not_after timestamptz, p_addr text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    t join_tokens;
    held text;
BEGIN
    -- The event lock before any row lock (docs/decisions.md §11).
    PERFORM pg_advisory_xact_lock(726200101);
    SELECT * INTO t FROM join_tokens WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR t.secret_sha256 <> decode(p_sha256_hex, 'hex') THEN
        RETURN 'the join token is not known';
    END IF;
    IF t.used_at IS NOT NULL THEN
        RETURN format('join token %s was already used by %s', t.id, t.used_by);
    END IF;
    IF t.expires_at <= now() THEN
        RETURN format('join token %s expired at %s', t.id, cloud_ts(t.expires_at));
    END IF;
    -- A token lets its holder choose the host name: never one that a live
    -- certificate speaks for already (re-joining needs a revocation first).
    SELECT serial INTO held FROM agent_certs
     WHERE host_name = p_host AND revoked_at IS NULL AND not_after > now() LIMIT 1;
    IF FOUND THEN
        RETURN format('host %s already has certificate %s; revoke it first '
                      '(cloud-controller cert revoke --host %s)', p_host, held, p_host);
    END IF;
    UPDATE join_tokens SET used_at = now(), used_by = p_host WHERE id = t.id;
    INSERT INTO agent_certs (serial, host_name, token_id, not_after)
    VALUES (p_serial, p_host, t.id, p_not_after);
    PERFORM cloud_event('host.joined', 'host', NULL, p_host,
        format('host %s joined from %s with join token %s (certificate %s)',
               p_host, p_addr, t.id, p_serial), 'join');
    RETURN NULL;
END $$;
