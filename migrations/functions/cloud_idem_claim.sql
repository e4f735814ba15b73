-- Claims an idempotency key for a new object. Returns the id of the object
-- an earlier request created with the key, or NULL when the key is new. A
-- concurrent request with the same key waits on the key's row, then sees it.
CREATE OR REPLACE FUNCTION cloud_idem_claim(p_key text, p_route text, p_new_id text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    prior idempotency_keys;
BEGIN
    IF p_key IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        INSERT INTO idempotency_keys (key, route, object_id) VALUES (p_key, p_route, p_new_id);
        RETURN NULL;
    EXCEPTION WHEN unique_violation THEN
        SELECT * INTO prior FROM idempotency_keys WHERE key = p_key;
        IF prior.route <> p_route THEN
            PERFORM cloud_raise('CL409', format('idempotency key %s was already used on %s', p_key, prior.route));
        END IF;
        RETURN prior.object_id;
    END;
END $$;
