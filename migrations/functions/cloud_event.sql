-- Appends an event. The advisory lock makes id order equal commit order
-- (every writer appends its event last, then commits), so a watcher that has
-- seen id N never later finds a committed id below N.
CREATE OR REPLACE FUNCTION cloud_event(p_type text, p_object text, p_object_id text,
                            p_name text, p_message text, p_actor text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    eid bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    INSERT INTO events (type, object, object_id, name, message, actor)
    VALUES (p_type, p_object, p_object_id, p_name, p_message, coalesce(p_actor, 'api'))
    RETURNING id INTO eid;
    -- The batch reports each item's last event id, so the controller's
    -- cache can skip re-reading what it just wrote (cache.c).
    PERFORM set_config('cloud.last_event', eid::text, true);
    RETURN eid;
END $$;
