-- Resolves an instance reference: id, live name, name, or a unique id prefix
-- of at least 4 characters.
CREATE OR REPLACE FUNCTION cloud_instance_resolve(p_ref text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r text;
    n integer;
BEGIN
    SELECT id INTO r FROM instances WHERE id = p_ref;
    IF FOUND THEN
        RETURN r;
    END IF;
    SELECT id INTO r FROM instances WHERE name = p_ref
     ORDER BY (desired_state = 'deleted'), created_at DESC LIMIT 1;
    IF FOUND THEN
        RETURN r;
    END IF;
    IF length(p_ref) BETWEEN 4 AND 15 AND p_ref ~ '^[0-9a-f]*$' THEN
        -- Ids are lower-case hex in the "C" collation, so every id with
        -- this prefix sorts in [prefix, prefix || 'g').
        SELECT count(*), min(id) INTO n, r
          FROM (SELECT id FROM instances
                 WHERE id >= p_ref AND id < (p_ref || 'g') LIMIT 2) x;
        IF n = 1 THEN
            RETURN r;
        ELSIF n > 1 THEN
            PERFORM cloud_raise('CL409', format('instance prefix %s is ambiguous; give more characters', p_ref));
        END IF;
    END IF;
    PERFORM cloud_raise('CL404', format('instance %s not found', p_ref));
    RETURN NULL;
END $$;
