-- CL422 naming the image field when p_ref names no image.
CREATE OR REPLACE FUNCTION cloud_image_require(p_ref text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF (cloud_image_find(p_ref)).id IS NULL THEN
        PERFORM cloud_raise('CL422', format('image %s not found; push it first (cloudctl images push)', p_ref), 'image');
    END IF;
END $$;
