-- op service_remove: {id, version}: a deleting service whose last instance
-- is gone.
CREATE OR REPLACE FUNCTION cloud_rec_service_remove(a jsonb, p_actor text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s services;
BEGIN
    SELECT * INTO s FROM services WHERE id = a->>'id' FOR UPDATE;
    IF NOT FOUND OR s.version <> (a->>'version')::bigint OR s.state <> 'deleting'
       OR EXISTS (SELECT 1 FROM instances WHERE service_id = s.id) THEN
        RETURN;
    END IF;
    DELETE FROM services WHERE id = s.id;
    PERFORM cloud_event('service.deleted', 'service', s.id, s.name,
        format('service %s deleted: its last instance is gone', s.name), p_actor);
END $$;
