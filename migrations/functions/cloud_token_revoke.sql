-- Revokes the token p_name.
CREATE OR REPLACE FUNCTION cloud_token_revoke(p_name text, p_actor text,
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
