-- Deletes the upload sessions idle for p_idle seconds or more, with their
-- pieces; returns what it deleted (for the log). Run by every replica: a
-- second sweep finds nothing.
CREATE OR REPLACE FUNCTION cloud_upload_sweep(p_idle integer)
RETURNS TABLE (id text, received bigint)
LANGUAGE sql AS $$
    DELETE FROM upload_sessions s
     WHERE s.updated_at <= now() - make_interval(secs => p_idle)
    RETURNING s.id, s.received;
$$;
