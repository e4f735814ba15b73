-- The API requests of one cloud_batch that were refused or failed, for the
-- audit trail (p: the whole batch; audit items are {op: "audit", args:
-- [actor, "METHOD URI", status, message]}). One statement for all of them,
-- in item order: a client that floods the API with refused writes costs
-- one INSERT per batch, not one function call per request, and does not
-- starve the writes queued with it (issue 13). Successful requests are
-- audited by the event of the change they made.
CREATE OR REPLACE FUNCTION cloud_audit_many(p jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    last bigint;
BEGIN
    INSERT INTO events (type, object, object_id, name, message, actor)
    SELECT CASE WHEN (x.value->'args'->>2)::integer IN (401, 403) THEN 'api.denied'
                ELSE 'api.failed' END,
           'api', NULL, x.value->'args'->>1,
           format('%s: %s -> %s %s', x.value->'args'->>0, x.value->'args'->>1,
                  x.value->'args'->>2, x.value->'args'->>3),
           coalesce(x.value->'args'->>0, 'api')
      FROM jsonb_array_elements(p) WITH ORDINALITY AS x(value, ord)
     WHERE x.value->>'op' = 'audit'
     ORDER BY x.ord;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
