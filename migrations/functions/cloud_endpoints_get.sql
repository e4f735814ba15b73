-- GET /v1/services/{name}/endpoints: the stored endpoints and their
-- version (CL404 without the service).
CREATE OR REPLACE FUNCTION cloud_endpoints_get(p_name text, OUT body json, OUT version bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM services WHERE name = p_name) THEN
        PERFORM cloud_raise('CL404', format('service %s not found', p_name));
    END IF;
    body := cloud_endpoints_json(p_name);
    version := (body->>'version')::bigint;
END $$;
