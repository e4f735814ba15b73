-- Recomputes the endpoints of p_name; when they changed, bumps their
-- version and the effective config version of every service linking to
-- p_name, and appends endpoints.changed (the gateway pushes to the hosts
-- of the linking services, endpoint watchers re-read).
CREATE OR REPLACE FUNCTION cloud_endpoints_refresh(p_name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r service_runtime;
    eps jsonb;
    l text;
BEGIN
    IF p_name IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(726200101);
    eps := cloud_endpoints_compute(p_name);
    SELECT * INTO r FROM service_runtime WHERE name = p_name;
    IF (FOUND AND r.endpoints = eps) OR (NOT FOUND AND eps = '[]'::jsonb) THEN
        RETURN;
    END IF;
    INSERT INTO service_runtime AS t (name, endpoints_version, endpoints)
    VALUES (p_name, 1, eps)
    ON CONFLICT (name) DO UPDATE SET endpoints_version = t.endpoints_version + 1,
                                     endpoints = eps, updated_at = now()
    RETURNING * INTO r;
    FOR l IN SELECT s.name FROM services s WHERE s.links ? p_name ORDER BY s.name LOOP
        PERFORM cloud_config_bump(l);
    END LOOP;
    PERFORM cloud_event('endpoints.changed', 'config',
        (SELECT id FROM services WHERE name = p_name), p_name,
        format('service %s endpoints version %s: %s endpoints', p_name,
               r.endpoints_version, jsonb_array_length(eps)), 'controller');
END $$;
