-- POST /v1/images: an image of uploaded blobs (kernel, initrd, disk; CL422
-- for one not uploaded), its size their sum.
CREATE OR REPLACE FUNCTION cloud_image_create(p jsonb, p_actor text,
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
