-- An event as the API and the watch stream show it.
CREATE OR REPLACE FUNCTION cloud_event_json(e events) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', e.id, 'time', cloud_ts(e.time), 'type', e.type,
        'object', e.object, 'object_id', e.object_id, 'name', e.name,
        'message', e.message, 'actor', e.actor)
$$;
