-- 0012: agent enrolment. A join token is <id>.<secret>: the id (16 hex)
-- names the row, the secret (64 hex, 256 bits) is shown once and only its
-- SHA-256 is kept. A token is good for one join before it expires. Every
-- certificate the controller signs for an agent is recorded with its serial
-- (upper-case hex, no leading zeros) so that it can be revoked; certificates
-- made out of band (`cloud-controller issue-agent-cert`) can be revoked by
-- serial too, and then have no host name or expiry on record.

CREATE TABLE join_tokens (
    id             text COLLATE "C" PRIMARY KEY CHECK (length(id) = 16 AND id ~ '^[0-9a-f]*$'),
    secret_sha256  bytea NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    used_by        text CHECK (length(used_by) <= 253),
    CHECK (expires_at > created_at),
    CHECK ((used_at IS NULL) = (used_by IS NULL))
);

CREATE TABLE agent_certs (
    serial      text COLLATE "C" PRIMARY KEY
                CHECK (length(serial) <= 64 AND serial ~ '^[1-9A-F][0-9A-F]*$'),
    host_name   text CHECK (length(host_name) <= 253
                            AND host_name ~ '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$'),
    token_id    text REFERENCES join_tokens (id) ON DELETE SET NULL,
    not_after   timestamptz,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK ((host_name IS NULL) = (not_after IS NULL))
);
CREATE INDEX agent_certs_host ON agent_certs (host_name);
CREATE INDEX agent_certs_revoked ON agent_certs (serial) WHERE revoked_at IS NOT NULL;

CREATE FUNCTION cloud_join_token_create(p_id text, p_sha256_hex text, p_ttl_seconds bigint,
                                        p_actor text)
RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
    t join_tokens;
BEGIN
    INSERT INTO join_tokens (id, secret_sha256, expires_at)
    VALUES (p_id, decode(p_sha256_hex, 'hex'), now() + make_interval(secs => p_ttl_seconds))
    RETURNING * INTO t;
    PERFORM cloud_event('token.join_created', 'token', t.id, t.id,
        format('join token %s created, expires %s', t.id, cloud_ts(t.expires_at)), p_actor);
    RETURN t.expires_at;
END $$;

-- Consumes a join token and records the certificate signed for it, in one
-- transaction: a refusal (unknown, used or expired token, or a host name
-- that an unrevoked certificate on record speaks for) records nothing, and a token can be used by
-- one join only (the row lock serialises two joins racing for it). Returns
-- NULL on success, else the reason (one sentence, no secret in it).
CREATE FUNCTION cloud_join_complete(p_id text, p_sha256_hex text, p_host text, p_serial text,
                                    p_not_after timestamptz, p_addr text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    t join_tokens;
    held text;
BEGIN
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

-- Revokes one certificate by serial, or every certificate of a host. An
-- unknown serial is recorded as revoked (an out-of-band certificate).
-- Returns the number of certificates newly revoked.
CREATE FUNCTION cloud_cert_revoke(p_serial text, p_host text, p_actor text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
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
