-- The instance p_ref (id or name) locked FOR UPDATE, checked against If-
-- Match (CL404, CL412) and, with p_live, refused while it is being deleted
-- (CL409: start and restart).
DROP FUNCTION IF EXISTS cloud_instance_lock(text, bigint);
CREATE OR REPLACE FUNCTION cloud_instance_lock(p_ref text, p_if_match bigint,
                                               p_live boolean DEFAULT false)
RETURNS instances
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    SELECT * INTO i FROM instances WHERE id = cloud_instance_resolve(p_ref) FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('instance %s not found', p_ref));
    END IF;
    IF p_if_match IS NOT NULL AND i.version <> p_if_match THEN
        PERFORM cloud_raise('CL412', format('instance %s is at version %s, not %s', i.name, i.version, p_if_match));
    END IF;
    IF p_live AND i.desired_state = 'deleted' THEN
        PERFORM cloud_raise('CL409', format('instance %s is being deleted', i.name));
    END IF;
    RETURN i;
END $$;
