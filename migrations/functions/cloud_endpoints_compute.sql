-- The endpoints of the service named p_name as they are now: running
-- instances meant to run (and, with ready_when "guest", ready) that have an
-- address. Sorted by addr, then instance id (byte order): stable.
CREATE OR REPLACE FUNCTION cloud_endpoints_compute(p_name text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('instance', x.id, 'name', x.name,
                                                 'address', x.address, 'port', x.port,
                                                 'addr', x.addr)
                              ORDER BY x.addr COLLATE "C", x.id COLLATE "C"), '[]')
      FROM (SELECT DISTINCT i.id, i.name, p.address, p.port,
                   cloud_endpoint_addr(p.address, p.port) AS addr
              FROM services s
              JOIN instances i ON i.service_id = s.id
             CROSS JOIN LATERAL jsonb_array_elements_text(i.addresses) a(raw)
             CROSS JOIN LATERAL cloud_endpoint_pairs(a.raw, s.ports) p
             WHERE s.name = p_name AND i.state = 'running'
               AND i.desired_state = 'running'
               AND (s.ready_when = 'running' OR i.ready)) x
$$;
