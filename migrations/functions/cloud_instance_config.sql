-- GET /v1/instances/{id}/config. An instance without a service has
-- version 0 and no config.
CREATE OR REPLACE FUNCTION cloud_instance_config(p_ref text, OUT body json, OUT version bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    i instances;
    ec record;
BEGIN
    SELECT * INTO i FROM instances WHERE id = cloud_instance_resolve(p_ref);
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('instance %s not found', p_ref));
    END IF;
    SELECT * INTO ec FROM cloud_effective_config(i.service_id);
    version := coalesce(ec.version, 0);
    body := json_build_object('instance', i.id, 'name', i.name,
                              'service', (SELECT name FROM services WHERE id = i.service_id),
                              'version', version,
                              'config', coalesce(ec.config, '{}'::jsonb));
END $$;
