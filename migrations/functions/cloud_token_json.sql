-- An API token as the API shows it (never its secret).
CREATE OR REPLACE FUNCTION cloud_token_json(t tokens) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', t.id, 'name', t.name, 'role', t.role,
        'expires_at', cloud_ts(t.expires_at), 'revoked_at', cloud_ts(t.revoked_at),
        'created_at', cloud_ts(t.created_at))
$$;
