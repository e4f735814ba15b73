-- 0020: link variables have their own cap (issue 11, docs/config.md
-- "Limits"). Until now L_ENDPOINTS grew with the linked service without
-- bound, past what the agent's channel line could carry, and the guest
-- silently got nothing. Now each L_ENDPOINTS holds at most 16384 bytes
-- (common/cmdline.h GUEST_LINK_ENDPOINTS_MAX): the sorted list is cut after
-- the last whole address that fits, and L_ENDPOINTS_TRUNCATED gives the
-- number of endpoints the full list has (the variable exists only while
-- the list is cut, so a guest can tell a partial list from a whole one).

-- The link variable's value for one endpoints list: the distinct addrs,
-- sorted byte-wise, comma-separated, cut to p_max bytes at a whole
-- address; how many are in it and how many there are.
CREATE FUNCTION cloud_link_endpoints(p_endpoints jsonb, p_max integer,
                                     OUT list text, OUT kept integer, OUT total integer)
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(string_agg(a.addr, ',' ORDER BY a.addr COLLATE "C")
                      FILTER (WHERE a.run - 1 <= p_max), ''),
           (count(*) FILTER (WHERE a.run - 1 <= p_max))::integer,
           count(*)::integer
      FROM (SELECT d.addr,
                   sum(octet_length(d.addr) + 1) OVER (ORDER BY d.addr COLLATE "C") AS run
              FROM (SELECT DISTINCT e->>'addr' AS addr
                      FROM jsonb_array_elements(coalesce(p_endpoints, '[]'::jsonb)) e) d
             WHERE d.addr IS NOT NULL) a
$$;

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
