-- One batch of reconciler decisions: p is a JSON array of
-- {"op": ..., ...}. One transaction, one NOTIFY, the epoch checked first.
-- Each op re-checks its object's version and state and quietly does nothing
-- when they moved on (the caller re-reads what it returns and decides
-- again). Returns the objects to re-read.
--
-- The ops a scale-up or scale-down is made of, create, retire, place and
-- unplaceable, are applied set-based (creates first, then retires, the
-- other two after the rest): one INSERT, UPDATE or DELETE and one INSERT
-- of events for all of each kind (per service for creates), with the same
-- checks as one op at a time (cloud_rec_create_many, cloud_rec_retire_many,
-- cloud_rec_place_many, cloud_rec_unplaceable_many; issue 13). A pass decides once per instance; where an earlier op moved
-- an instance on, the version check skips the later one, whatever the
-- order.
CREATE OR REPLACE FUNCTION cloud_reconcile(p_epoch bigint, p_actor text, p jsonb)
RETURNS TABLE (kind text, id text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    a jsonb;
BEGIN
    PERFORM cloud_lease_check(p_epoch);
    -- Creates first, as the decisions list them before the retires they
    -- make room for (a rollout's surge): a retired ordinal is not reused in
    -- the same batch, and the events read in that order.
    RETURN QUERY SELECT 'instance'::text, c FROM cloud_rec_create_many(p, p_actor) c;
    RETURN QUERY SELECT DISTINCT 'service'::text, x->>'service' FROM jsonb_array_elements(p) x
                  WHERE x->>'op' = 'create';
    -- Retires next, set-based too (a scale-down is made of them).
    PERFORM cloud_rec_retire_many(p, p_actor);
    RETURN QUERY SELECT 'instance'::text, x->>'id' FROM jsonb_array_elements(p) x
                  WHERE x->>'op' = 'retire';
    FOR a IN SELECT value FROM jsonb_array_elements(p)
              WHERE value->>'op' NOT IN ('create', 'retire', 'place', 'unplaceable') LOOP
        -- What to re-read: the op's object, an instance unless it says.
        kind := 'instance';
        id := a->>'id';
        CASE a->>'op'
        WHEN 'purge' THEN
            PERFORM cloud_rec_purge(a, p_actor);
        WHEN 'restart' THEN
            PERFORM cloud_rec_restart(a, p_actor);
        WHEN 'service_remove' THEN
            PERFORM cloud_rec_service_remove(a, p_actor);
            kind := 'service';
        WHEN 'drained' THEN
            PERFORM cloud_rec_drained(a, p_actor);
            kind := 'host';
        WHEN 'event' THEN
            -- A decision that changes no row (rollout progress, a restart
            -- policy that says no): the event is the record.
            PERFORM cloud_event(a->>'type', a->>'object', a->>'id', a->>'name',
                                a->>'message', p_actor);
            CONTINUE;
        ELSE
            PERFORM cloud_raise('CL422', format('unknown reconciler operation %s', a->>'op'));
        END CASE;
        RETURN NEXT;
    END LOOP;
    PERFORM cloud_rec_place_many(p, p_actor);
    PERFORM cloud_rec_unplaceable_many(p, p_actor);
    RETURN QUERY SELECT 'instance'::text, x->>'id' FROM jsonb_array_elements(p) x
                  WHERE x->>'op' IN ('place', 'unplaceable');
END $$;
