-- The service p_name as it is, not locked (CL404): for the functions that
-- only read it. A writer takes cloud_service_lock.
CREATE OR REPLACE FUNCTION cloud_service_get(p_name text) RETURNS services
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s services;
BEGIN
    SELECT * INTO s FROM services WHERE name = p_name;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('service %s not found', p_name));
    END IF;
    RETURN s;
END $$;
