-- The service p_name locked FOR UPDATE, checked against If-Match (CL404,
-- CL412).
CREATE OR REPLACE FUNCTION cloud_service_lock(p_name text, p_if_match bigint) RETURNS services
LANGUAGE plpgsql AS $$
DECLARE
    s services;
BEGIN
    SELECT * INTO s FROM services WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('service %s not found', p_name));
    END IF;
    IF p_if_match IS NOT NULL AND s.version <> p_if_match THEN
        PERFORM cloud_raise('CL412', format('service %s is at version %s, not %s', p_name, s.version, p_if_match));
    END IF;
    RETURN s;
END $$;
