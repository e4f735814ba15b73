-- DELETE /v1/services/{name}: its instances that hold nothing go now, the
-- others are asked to stop; the service goes when none is left (200), else
-- it is deleting (202).
CREATE OR REPLACE FUNCTION cloud_service_delete(p_name text, p_if_match bigint, p_actor text,
                                     OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    s services;
    i instances;
BEGIN
    s := cloud_service_lock(p_name, p_if_match);
    -- Instances that never reached a host, or have finished, hold nothing
    -- and go now; the others are asked to stop. Each change is an event.
    FOR i IN DELETE FROM instances
              WHERE service_id = s.id
                AND (host_id IS NULL OR state IN ('exited', 'failed', 'lost'))
              RETURNING * LOOP
        PERFORM cloud_event('instance.deleted', 'instance', i.id, i.name,
            format('instance %s deleted with service %s', i.name, s.name), p_actor);
    END LOOP;
    FOR i IN UPDATE instances SET desired_state = 'deleted',
                                  stop_signal = coalesce(stop_signal, 'TERM'),
                                  version = version + 1, updated_at = now()
              WHERE service_id = s.id AND desired_state <> 'deleted'
              RETURNING * LOOP
        PERFORM cloud_event('instance.deleting', 'instance', i.id, i.name,
            format('instance %s: deleting with service %s', i.name, s.name), p_actor);
    END LOOP;
    IF EXISTS (SELECT 1 FROM instances WHERE service_id = s.id) THEN
        UPDATE services SET state = 'deleting', version = version + 1, updated_at = now()
         WHERE id = s.id RETURNING * INTO s;
        PERFORM cloud_event('service.deleting', 'service', s.id, s.name,
            format('service %s: deleting, waiting for its instances to stop', s.name), p_actor);
        status := 202;
        body := cloud_service_json(s);
    ELSE
        DELETE FROM services WHERE id = s.id;
        PERFORM cloud_event('service.deleted', 'service', s.id, s.name,
            format('service %s deleted', s.name), p_actor);
        status := 200;
        body := json_build_object('deleted', true, 'id', s.id, 'name', s.name);
    END IF;
END $$;
