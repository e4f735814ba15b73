-- Records an API token (its SHA-256 only) with a role and an optional TTL;
-- the tokens quota counts it.
CREATE OR REPLACE FUNCTION cloud_token_create(p_name text, p_role text, p_sha256_hex text,
                                   p_ttl_seconds bigint, p_actor text,
                                   OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    t tokens;
BEGIN
    IF EXISTS (SELECT 1 FROM tokens WHERE name = p_name) THEN
        PERFORM cloud_raise('CL409', format('token %s already exists', p_name), 'name');
    END IF;
    INSERT INTO tokens (id, name, secret_sha256, role, expires_at)
    VALUES (cloud_new_id(), p_name, decode(p_sha256_hex, 'hex'), p_role,
            CASE WHEN p_ttl_seconds IS NULL THEN NULL
                 ELSE now() + make_interval(secs => p_ttl_seconds) END)
    RETURNING * INTO t;
    PERFORM cloud_event('token.created', 'token', t.id, t.name,
        format('token %s created with role %s%s', t.name, t.role,
               CASE WHEN t.expires_at IS NULL THEN ''
                    ELSE ', expires ' || cloud_ts(t.expires_at) END), p_actor);
    status := 201;
    body := cloud_token_json(t);
END $$;
