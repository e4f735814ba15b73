-- A timestamp as the API writes it: UTC, milliseconds, Z.
CREATE OR REPLACE FUNCTION cloud_ts(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;
