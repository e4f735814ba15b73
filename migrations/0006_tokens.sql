-- 0006: API tokens. Secrets never reach the database: the controller draws
-- 256 random bits, shows them once, and stores only their SHA-256. Roles:
-- viewer (reads, watches), operator (run, scale, kill, config), admin
-- (tokens, hosts, images). Join tokens for agents come with the join flow.

CREATE FUNCTION cloud_token_json(t tokens) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', t.id, 'name', t.name, 'role', t.role,
        'expires_at', cloud_ts(t.expires_at), 'revoked_at', cloud_ts(t.revoked_at),
        'created_at', cloud_ts(t.created_at))
$$;

CREATE FUNCTION cloud_token_create(p_name text, p_role text, p_sha256_hex text,
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

CREATE FUNCTION cloud_token_revoke(p_name text, p_actor text,
                                   OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    t tokens;
BEGIN
    UPDATE tokens SET revoked_at = coalesce(revoked_at, now())
     WHERE name = p_name RETURNING * INTO t;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('token %s not found', p_name));
    END IF;
    PERFORM cloud_event('token.revoked', 'token', t.id, t.name,
        format('token %s revoked', t.name), p_actor);
    status := 200;
    body := cloud_token_json(t);
END $$;

-- An API request that was refused or failed, for the audit trail (the
-- successful ones are audited by the event of the change they made).
CREATE FUNCTION cloud_audit(p_actor text, p_what text, p_status integer,
                            p_message text, OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cloud_event(CASE WHEN p_status IN (401, 403) THEN 'api.denied'
                             ELSE 'api.failed' END,
        'api', NULL, p_what,
        format('%s: %s -> %s %s', p_actor, p_what, p_status, p_message), p_actor);
    status := 200;
    body := '{}'::json;
END $$;
