-- The first statement of a blob upload's transaction (api_blobs.c,
-- blobstore.c): creates the blobs row (the blob_bytes quota trigger runs
-- here, before any chunk is sent) and says whether the caller must write
-- the chunks. A row already there (another upload of the same digest,
-- committed with its chunks) is only made fresh again, as cloud_blob_add
-- does, and needs no chunks, unless it predates migration 0023 and has
-- none. A concurrent upload of the same digest waits here on the unique
-- index until the first commits or rolls back.
CREATE OR REPLACE FUNCTION cloud_blob_put(p_digest text, p_size bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO blobs (digest, size) VALUES (p_digest, p_size)
    ON CONFLICT (digest) DO NOTHING;
    IF FOUND THEN
        RETURN p_size > 0;
    END IF;
    UPDATE blobs SET created_at = now() WHERE digest = p_digest;
    RETURN p_size > 0 AND NOT EXISTS (SELECT 1 FROM blob_chunks c
                                       WHERE c.digest = p_digest);
END $$;
