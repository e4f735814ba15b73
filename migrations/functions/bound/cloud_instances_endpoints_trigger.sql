-- Only a change that can move an endpoint costs a recomputation: the row
-- was or is running.
CREATE OR REPLACE FUNCTION cloud_instances_endpoints_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.state = 'running' THEN
            PERFORM cloud_endpoints_refresh((SELECT name FROM services WHERE id = OLD.service_id));
        END IF;
        RETURN NULL;
    END IF;
    IF OLD.state <> 'running' AND NEW.state <> 'running' THEN
        RETURN NULL;
    END IF;
    PERFORM cloud_endpoints_refresh((SELECT name FROM services WHERE id = NEW.service_id));
    IF OLD.service_id IS DISTINCT FROM NEW.service_id THEN
        PERFORM cloud_endpoints_refresh((SELECT name FROM services WHERE id = OLD.service_id));
    END IF;
    RETURN NULL;
END $$;
