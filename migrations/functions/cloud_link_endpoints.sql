-- The link variable's value for one endpoints list: the distinct addrs,
-- sorted byte-wise, comma-separated, cut to p_max bytes at a whole
-- address; how many are in it and how many there are.
CREATE OR REPLACE FUNCTION cloud_link_endpoints(p_endpoints jsonb, p_max integer,
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
