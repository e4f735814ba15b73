-- A blob uploaded again is fresh again: its GC grace starts over, so an
-- image created right after a re-upload cannot lose it to the collector.
CREATE OR REPLACE FUNCTION cloud_blob_add(p_digest text, p_size bigint, p_actor text,
                                          OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO blobs (digest, size) VALUES (p_digest, p_size)
    ON CONFLICT (digest) DO UPDATE SET created_at = now();
    status := 201;
    body := json_build_object('digest', p_digest, 'size', p_size);
END $$;
