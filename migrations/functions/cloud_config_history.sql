-- GET /v1/services/{name}/config/history: newest first, after = a version
-- (the page holds versions below it).
CREATE OR REPLACE FUNCTION cloud_config_history(p_name text, p_after bigint, p_limit integer)
RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s services;
    items json;
    n integer;
    lastv bigint;
BEGIN
    s := cloud_service_get(p_name);
    SELECT coalesce(json_agg(json_build_object('version', x.version,
                                               'created_at', cloud_ts(x.created_at),
                                               'config', x.data) ORDER BY x.version DESC), '[]'),
           count(*), min(x.version)
      INTO items, n, lastv
      FROM (SELECT * FROM service_config c
             WHERE c.service_id = s.id AND (p_after IS NULL OR c.version < p_after)
             ORDER BY c.version DESC LIMIT p_limit) x;
    RETURN json_build_object('items', items, 'next',
        CASE WHEN n = p_limit AND EXISTS (SELECT 1 FROM service_config c
                                           WHERE c.service_id = s.id AND c.version < lastv)
             THEN lastv::text END);
END $$;
