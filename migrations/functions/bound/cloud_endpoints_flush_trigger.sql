-- At commit (a deferred constraint trigger, fired after every statement
-- of the transaction): recomputes the endpoints of each service that
-- cloud_instances_endpoints_trigger noted, once, from the rows as the
-- transaction leaves them. The first firing takes the whole list; the
-- others find it empty.
CREATE OR REPLACE FUNCTION cloud_endpoints_flush_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    dirty text := coalesce(current_setting('cloud.endpoints_dirty', true), '');
    n text;
BEGIN
    IF dirty = '' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('cloud.endpoints_dirty', '', true);
    FOR n IN SELECT x FROM unnest(string_to_array(rtrim(dirty, E'\n'), E'\n')) x
              ORDER BY x COLLATE "C" LOOP
        PERFORM cloud_endpoints_refresh(n);
    END LOOP;
    RETURN NULL;
END $$;
