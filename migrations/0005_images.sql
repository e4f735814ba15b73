-- 0005: image uploads. Blobs arrive through chunked upload sessions
-- (controller/blobs.c) and are registered here once their SHA-256 is
-- verified; images name blobs with name:tag. Deleting an image that a
-- service or a live instance uses is refused.

CREATE FUNCTION cloud_blob_add(p_digest text, p_size bigint, p_actor text,
                               OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO blobs (digest, size) VALUES (p_digest, p_size)
    ON CONFLICT (digest) DO NOTHING;
    status := 201;
    body := json_build_object('digest', p_digest, 'size', p_size);
END $$;

CREATE FUNCTION cloud_image_create(p jsonb, p_actor text,
                                   OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    i images;
    d text;
    total bigint := 0;
BEGIN
    FOREACH d IN ARRAY ARRAY[p->>'kernel', p->>'initrd', p->>'disk'] LOOP
        IF d IS NOT NULL THEN
            IF NOT EXISTS (SELECT 1 FROM blobs WHERE digest = d) THEN
                PERFORM cloud_raise('CL422', format('blob %s was not uploaded; upload it first', d),
                    CASE d WHEN p->>'kernel' THEN 'kernel'
                           WHEN p->>'initrd' THEN 'initrd' ELSE 'disk' END);
            END IF;
            total := total + (SELECT size FROM blobs WHERE digest = d);
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM images WHERE name = p->>'name' AND tag = p->>'tag') THEN
        PERFORM cloud_raise('CL409', format('image %s:%s already exists; delete it or use another tag',
                                            p->>'name', p->>'tag'), 'tag');
    END IF;
    INSERT INTO images (id, name, tag, kind, kernel_digest, initrd_digest, disk_digest,
                        cmdline, size)
    VALUES (cloud_new_id(), p->>'name', p->>'tag', p->>'kind', p->>'kernel',
            p->>'initrd', p->>'disk', coalesce(p->>'cmdline', ''), total)
    RETURNING * INTO i;
    PERFORM cloud_event('image.created', 'image', i.id, i.name || ':' || i.tag,
        format('image %s:%s created (%s, %s bytes)', i.name, i.tag, i.kind, i.size), p_actor);
    status := 201;
    body := cloud_image_json(i);
END $$;

CREATE FUNCTION cloud_image_delete(p_ref text, p_actor text,
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
