-- {"service","version","endpoints"} of p_name (a name never seen: version
-- 0, no endpoints).
CREATE OR REPLACE FUNCTION cloud_endpoints_json(p_name text) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('service', p_name,
                             'version', coalesce(r.endpoints_version, 0),
                             'endpoints', coalesce(r.endpoints, '[]'::jsonb))
      FROM (SELECT 1) one LEFT JOIN service_runtime r ON r.name = p_name
$$;
