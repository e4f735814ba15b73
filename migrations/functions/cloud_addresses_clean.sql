-- At most 64 addresses of at most 255 characters each, as strings; anything
-- else in the report is dropped (the agent bounds them too).
CREATE OR REPLACE FUNCTION cloud_addresses_clean(a jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(a) = 'array' THEN
        coalesce((SELECT jsonb_agg(x.v ORDER BY x.n)
                    FROM (SELECT e.value AS v, e.ordinality AS n
                            FROM jsonb_array_elements(a) WITH ORDINALITY e
                           WHERE jsonb_typeof(e.value) = 'string'
                             AND length(e.value #>> '{}') BETWEEN 1 AND 255
                           ORDER BY e.ordinality LIMIT 64) x), '[]'::jsonb)
        ELSE '[]'::jsonb END
$$;
