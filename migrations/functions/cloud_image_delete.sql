-- DELETE /v1/images/{ref}: refused (CL409) while a service or a live
-- instance uses it.
CREATE OR REPLACE FUNCTION cloud_image_delete(p_ref text, p_actor text,
                                   OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    i images;
    user_name text;
BEGIN
    i := cloud_image_find(p_ref);
    IF i.id IS NULL THEN
        PERFORM cloud_raise('CL404', format('image %s not found', p_ref));
    END IF;
    SELECT name INTO user_name FROM services s
     WHERE (cloud_image_find(s.image)).id = i.id LIMIT 1;
    IF user_name IS NOT NULL THEN
        PERFORM cloud_raise('CL409', format('image %s:%s is used by service %s', i.name, i.tag, user_name));
    END IF;
    SELECT name INTO user_name FROM instances x
     WHERE x.desired_state <> 'deleted' AND x.state NOT IN ('exited', 'failed', 'lost')
       AND (cloud_image_find(x.image)).id = i.id LIMIT 1;
    IF user_name IS NOT NULL THEN
        PERFORM cloud_raise('CL409', format('image %s:%s is used by instance %s', i.name, i.tag, user_name));
    END IF;
    DELETE FROM images WHERE id = i.id;
    PERFORM cloud_event('image.deleted', 'image', i.id, i.name || ':' || i.tag,
        format('image %s:%s deleted', i.name, i.tag), p_actor);
    status := 200;
    body := json_build_object('deleted', true, 'id', i.id, 'ref', i.name || ':' || i.tag);
END $$;
