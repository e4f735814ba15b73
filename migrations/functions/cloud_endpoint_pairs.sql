-- The (address, port) pairs one reported address yields: "ip:port" (or
-- "[v6]:port") as is; a bare address (a "/prefix" dropped) once per declared
-- port, or with port 0 when the service declares none.
CREATE OR REPLACE FUNCTION cloud_endpoint_pairs(p_raw text, p_ports jsonb)
RETURNS TABLE (address text, port integer)
LANGUAGE sql IMMUTABLE AS $$
    WITH m AS (
        SELECT regexp_match(p_raw, '^(\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):([0-9]{1,5})$') AS g,
               regexp_replace(p_raw, '/[0-9]{1,3}$', '') AS bare
    )
    SELECT coalesce(m.g[2], m.g[3]), m.g[4]::integer
      FROM m WHERE m.g IS NOT NULL AND m.g[4]::integer BETWEEN 1 AND 65535
    UNION ALL
    SELECT m.bare, p.port
      FROM m, LATERAL (
            SELECT (e.value->>'port')::integer AS port
              FROM jsonb_array_elements(p_ports) e
            UNION ALL
            SELECT 0 WHERE jsonb_array_length(p_ports) = 0) p
     WHERE m.g IS NULL AND m.bare <> ''
$$;
