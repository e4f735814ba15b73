-- Resolves an image reference: name:tag, name (tag latest), an image id, or
-- a blob digest. NULL when there is none.
CREATE OR REPLACE FUNCTION cloud_image_find(p_ref text) RETURNS images
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r images;
BEGIN
    IF length(p_ref) = 71 AND p_ref ~ '^sha256:[0-9a-f]*$' THEN
        SELECT * INTO r FROM images
         WHERE kernel_digest = p_ref OR disk_digest = p_ref
         ORDER BY created_at DESC LIMIT 1;
    ELSIF position(':' IN p_ref) > 0 THEN
        SELECT * INTO r FROM images
         WHERE name = split_part(p_ref, ':', 1)
           AND tag = substr(p_ref, position(':' IN p_ref) + 1);
    ELSE
        SELECT * INTO r FROM images WHERE name = p_ref AND tag = 'latest';
        IF NOT FOUND AND length(p_ref) = 16 AND p_ref ~ '^[0-9a-f]*$' THEN
            SELECT * INTO r FROM images WHERE id = p_ref;
        END IF;
    END IF;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN r;
END $$;
