CREATE OR REPLACE FUNCTION cloud_raise(p_code text, p_message text, p_field text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = p_code, MESSAGE = p_message,
                          COLUMN = coalesce(p_field, '');
END $$;
