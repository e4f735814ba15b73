-- Bumps the effective config version of the service named p_name.
CREATE OR REPLACE FUNCTION cloud_config_bump(p_name text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    e bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    INSERT INTO service_runtime AS r (name, epoch) VALUES (p_name, 1)
    ON CONFLICT (name) DO UPDATE SET epoch = r.epoch + 1, updated_at = now()
    RETURNING r.epoch INTO e;
    RETURN e;
END $$;
