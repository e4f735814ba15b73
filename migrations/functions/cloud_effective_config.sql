-- A service's effective config: its stored config plus, per linked
-- service, <NAME>_ENDPOINTS (cut to 16 KiB, cloud_link_endpoints),
-- <NAME>_ENDPOINTS_TRUNCATED while cut and <NAME>_ENDPOINTS_VERSION;
-- version is the service's runtime epoch.
CREATE OR REPLACE FUNCTION cloud_effective_config(p_service text, OUT version bigint, OUT config jsonb)
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT r.epoch FROM service_runtime r WHERE r.name = s.name), 0),
           coalesce((SELECT c.data FROM service_config c
                      WHERE c.service_id = s.id AND c.version = s.config_version), '{}'::jsonb)
           || coalesce((SELECT jsonb_object_agg(k.key, k.val)
                          FROM (SELECT upper(replace(l.value, '-', '_')) || '_ENDPOINTS' AS key,
                                       ep.list AS val
                                  FROM jsonb_array_elements_text(s.links) l
                                  LEFT JOIN service_runtime lr ON lr.name = l.value
                                  CROSS JOIN LATERAL cloud_link_endpoints(lr.endpoints, 16384) ep
                                UNION ALL
                                SELECT upper(replace(l.value, '-', '_')) || '_ENDPOINTS_TRUNCATED',
                                       ep.total::text
                                  FROM jsonb_array_elements_text(s.links) l
                                  LEFT JOIN service_runtime lr ON lr.name = l.value
                                  CROSS JOIN LATERAL cloud_link_endpoints(lr.endpoints, 16384) ep
                                 WHERE ep.kept < ep.total
                                UNION ALL
                                SELECT upper(replace(l.value, '-', '_')) || '_ENDPOINTS_VERSION',
                                       coalesce(lr.endpoints_version, 0)::text
                                  FROM jsonb_array_elements_text(s.links) l
                                  LEFT JOIN service_runtime lr ON lr.name = l.value) k),
                       '{}'::jsonb)
      FROM services s WHERE s.id = p_service
$$;
