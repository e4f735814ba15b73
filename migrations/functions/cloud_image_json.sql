-- An image as the API shows it.
CREATE OR REPLACE FUNCTION cloud_image_json(i images) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', i.id, 'name', i.name, 'tag', i.tag,
        'ref', i.name || ':' || i.tag, 'kind', i.kind,
        'kernel_digest', i.kernel_digest, 'initrd_digest', i.initrd_digest,
        'disk_digest', i.disk_digest, 'cmdline', i.cmdline, 'size', i.size,
        'created_at', cloud_ts(i.created_at))
$$;
