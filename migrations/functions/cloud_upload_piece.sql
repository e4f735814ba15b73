-- Stores one PATCH of upload session p_id and returns the session's new
-- offset. p_off is the client's Upload-Offset (NULL: at the end); it must
-- be where the session is, checked under the row lock that also serialises
-- two PATCHes of one session on two replicas. The session would grow past
-- p_max bytes: refused. An empty piece stores nothing and only keeps the
-- session alive.
CREATE OR REPLACE FUNCTION cloud_upload_piece(p_id text, p_off bigint, p_data bytea,
                                              p_max bigint, p_idle integer)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cur bigint;
    len bigint := length(p_data);
BEGIN
    SELECT received INTO cur FROM upload_sessions WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM cloud_raise('CL404', format('upload %s not found: it was finished, '
            'cancelled, or ended after %s s idle', p_id, p_idle));
    END IF;
    IF p_off IS NOT NULL AND p_off <> cur THEN
        PERFORM cloud_raise('CL409', format('upload %s is at offset %s, not %s',
            p_id, cur, p_off), 'Upload-Offset');
    END IF;
    IF cur + len > p_max THEN
        PERFORM cloud_raise('CL413', format('blobs are at most %s bytes', p_max));
    END IF;
    IF len > 0 THEN
        INSERT INTO upload_pieces (session, off, data) VALUES (p_id, cur, p_data);
    END IF;
    UPDATE upload_sessions SET received = cur + len, updated_at = now()
     WHERE id = p_id;
    RETURN cur + len;
END $$;
