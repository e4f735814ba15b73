-- Records a join token (its SHA-256 only) valid for p_ttl_seconds; returns
-- its expiry.
CREATE OR REPLACE FUNCTION cloud_join_token_create(p_id text, p_sha256_hex text, p_ttl_seconds bigint,
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
