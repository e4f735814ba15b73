-- A config version as the API shows it (GET /v1/services/{name}/config).
CREATE OR REPLACE FUNCTION cloud_config_json(s services, p_version bigint, p_data jsonb, p_at timestamptz)
RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('service', s.name, 'version', p_version,
                             'config', coalesce(p_data, '{}'::jsonb),
                             'updated_at', cloud_ts(p_at))
$$;
