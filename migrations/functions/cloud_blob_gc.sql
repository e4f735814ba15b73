-- Deletes blobs no image references that were uploaded more than
-- blobs.gc_grace_seconds ago, at most p_batch, and returns their digests
-- (the caller removes the files after this commits). The event lock
-- serialises it with image creates, which hold it from their start:
-- an image create either committed before (its reference is seen) or runs
-- after (and finds the blob gone: 422 "upload it first"). The images
-- foreign keys are the last line.
CREATE OR REPLACE FUNCTION cloud_blob_gc(p_batch integer)
RETURNS TABLE (digest text, size bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    RETURN QUERY
    DELETE FROM blobs b
     WHERE b.digest IN (
        SELECT x.digest FROM blobs x, cluster_settings st
         WHERE st.id = 1
           AND x.created_at < now() - make_interval(secs => st.blob_gc_grace_seconds)
           AND NOT EXISTS (SELECT 1 FROM images i
                            WHERE i.kernel_digest = x.digest OR i.initrd_digest = x.digest
                               OR i.disk_digest = x.digest)
         ORDER BY x.created_at LIMIT p_batch)
    RETURNING b.digest, b.size;
END $$;
