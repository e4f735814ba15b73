-- host:port of an endpoint (IPv6 in brackets; the address alone for port
-- 0).
CREATE OR REPLACE FUNCTION cloud_endpoint_addr(p_address text, p_port integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_port = 0 THEN p_address
                WHEN position(':' IN p_address) > 0 THEN '[' || p_address || ']:' || p_port
                ELSE p_address || ':' || p_port END
$$;
