-- Milliseconds since the epoch.
CREATE OR REPLACE FUNCTION cloud_ms(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT (extract(epoch FROM t) * 1000)::bigint
$$;
