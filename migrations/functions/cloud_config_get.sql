-- GET /v1/services/{name}/config[?version=N]. Version 0 always exists: the
-- empty config every service starts with.
CREATE OR REPLACE FUNCTION cloud_config_get(p_name text, p_version bigint, OUT body json, OUT version bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s services;
    c service_config;
BEGIN
    s := cloud_service_get(p_name);
    version := coalesce(p_version, s.config_version);
    IF version = 0 THEN
        body := cloud_config_json(s, 0, '{}', NULL);
        RETURN;
    END IF;
    SELECT * INTO c FROM service_config WHERE service_id = s.id AND service_config.version = cloud_config_get.version;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('service %s has no config version %s (current %s; the newest %s are kept)',
                                            p_name, version, s.config_version, cloud_config_keep()), 'version');
    END IF;
    body := cloud_config_json(s, c.version, c.data, c.created_at);
END $$;
