-- Only a change that can move an endpoint costs a recomputation: the row
-- was or is running. The recomputation itself waits for the commit
-- (cloud_endpoints_flush_trigger): here the service's name is only noted,
-- once per transaction, in the transaction-local setting
-- cloud.endpoints_dirty (names separated by newlines; a name never holds
-- one). A batch that starts 2,000 instances of one service recomputes its
-- endpoints once, not 2,000 times over every instance of the service
-- (quadratic at scale, issue 13; docs/decisions.md §23).
CREATE OR REPLACE FUNCTION cloud_instances_endpoints_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
    n text;
    dirty text := coalesce(current_setting('cloud.endpoints_dirty', true), '');
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.state <> 'running' THEN
            RETURN NULL;
        END IF;
        ids := ARRAY[OLD.service_id];
    ELSIF OLD.state <> 'running' AND NEW.state <> 'running' THEN
        RETURN NULL;
    ELSIF OLD.service_id IS DISTINCT FROM NEW.service_id THEN
        ids := ARRAY[NEW.service_id, OLD.service_id];
    ELSE
        ids := ARRAY[NEW.service_id];
    END IF;
    FOR n IN SELECT s.name FROM services s WHERE s.id = ANY(ids) LOOP
        IF position(E'\n' || n || E'\n' IN E'\n' || dirty) = 0 THEN
            dirty := dirty || n || E'\n';
        END IF;
    END LOOP;
    PERFORM set_config('cloud.endpoints_dirty', dirty, true);
    RETURN NULL;
END $$;
