-- Labels: a flat object of at most 64 string values (empty or 1..63 such
-- characters) under valid keys (controller/labels.c names the offending
-- one).
CREATE OR REPLACE FUNCTION cloud_labels_ok(l jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT l = '{}'::jsonb
        OR (jsonb_typeof(l) = 'object'
            AND (SELECT count(*) <= 64
                        AND bool_and(jsonb_typeof(e.value) = 'string'
                                     AND cloud_label_key_ok(e.key)
                                     AND (e.value #>> '{}') ~ '^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$')
                   FROM jsonb_each(l) e))
$$;
