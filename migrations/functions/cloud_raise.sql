-- Raises an API error: p_code is a SQLSTATE CL404/CL409/CL412/CL413/CL422 (db.c
-- maps them to HTTP), p_field the JSON field (COLUMN).
CREATE OR REPLACE FUNCTION cloud_raise(p_code text, p_message text, p_field text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = p_code, MESSAGE = p_message,
                          COLUMN = coalesce(p_field, '');
END $$;
