-- Claims an idempotency key for a new object p_new_id of p_route (POST
-- /v1/instances or POST /v1/services). Returns NULL when the key is new,
-- else the answer to replay: the JSON of the object an earlier request
-- created with the key (CL409 when it no longer exists, or when the key
-- was used on another route). A concurrent request with the same key waits
-- on the key's row, then sees it.
CREATE OR REPLACE FUNCTION cloud_idem_replay(p_key text, p_route text, p_new_id text)
RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    prior idempotency_keys;
    i instances;
    s services;
BEGIN
    IF p_key IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        INSERT INTO idempotency_keys (key, route, object_id) VALUES (p_key, p_route, p_new_id);
        RETURN NULL;
    EXCEPTION WHEN unique_violation THEN
        SELECT * INTO prior FROM idempotency_keys WHERE key = p_key;
    END;
    IF prior.route <> p_route THEN
        PERFORM cloud_raise('CL409', format('idempotency key %s was already used on %s', p_key, prior.route));
    END IF;
    -- The row first, then its JSON: one SELECT of the JSON function over
    -- the table measured several times slower (docs/benchmarks.md).
    IF p_route = 'POST /v1/services' THEN
        SELECT * INTO s FROM services WHERE id = prior.object_id;
        IF FOUND THEN
            RETURN cloud_service_json(s);
        END IF;
    ELSE
        SELECT * INTO i FROM instances WHERE id = prior.object_id;
        IF FOUND THEN
            RETURN cloud_instance_json(i);
        END IF;
    END IF;
    PERFORM cloud_raise('CL409', format('idempotency key %s created %s that no longer exists', p_key,
        CASE p_route WHEN 'POST /v1/services' THEN 'a service' ELSE 'an instance' END));
    RETURN NULL;
END $$;
