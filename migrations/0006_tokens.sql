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

CREATE OR REPLACE FUNCTION cloud_batch_one(op text, a jsonb, OUT st integer, OUT bd json)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    CASE op
    WHEN 'service_create' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_service_create((a->>0)::jsonb, a->>1, a->>2) f;
    WHEN 'service_patch' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_service_patch(a->>0, (a->>1)::jsonb, (a->>2)::bigint, a->>3) f;
    WHEN 'service_delete' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_service_delete(a->>0, (a->>1)::bigint, a->>2) f;
    WHEN 'instance_create' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_instance_create((a->>0)::jsonb, a->>1, a->>2) f;
    WHEN 'instance_kill' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_instance_kill(a->>0, a->>1, (a->>2)::bigint, a->>3) f;
    WHEN 'instance_delete' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_instance_delete(a->>0, (a->>1)::bigint, a->>2) f;
    WHEN 'host_action' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_host_action(a->>0, a->>1, (a->>2)::bigint, a->>3) f;
    WHEN 'blob_add' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_blob_add(a->>0, (a->>1)::bigint, a->>2) f;
    WHEN 'image_create' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_image_create((a->>0)::jsonb, a->>1) f;
    WHEN 'image_delete' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_image_delete(a->>0, a->>1) f;
    WHEN 'token_create' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_token_create(a->>0, a->>1, a->>2, (a->>3)::bigint, a->>4) f;
    WHEN 'token_revoke' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_token_revoke(a->>0, a->>1) f;
    WHEN 'audit' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_audit(a->>0, a->>1, (a->>2)::integer, a->>3) f;
    ELSE
        PERFORM cloud_raise('CL422', format('unknown batch operation %s', op));
    END CASE;
END $$;
