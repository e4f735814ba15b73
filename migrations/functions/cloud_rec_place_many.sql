-- The place ops of one cloud_reconcile batch (p: the whole batch, ops
-- {op, id, version, host}), applied as one statement. An op is skipped
-- unless its instance is still at that version, pending, unplaced, wanted
-- running and out of its restart back-off, and its host still ready.
--
-- Each instance placed gets the lowest free address of its host's subnet
-- (IPAM, docs/network.md), in the same statement: per host of the batch,
-- the gaps between the addresses its instances hold (the gateway .1 and
-- the broadcast address are the fences) give as many free addresses as the
-- batch needs there, and the k-th instance of a host (by id) takes the
-- k-th. Set-based, reading only the addresses of the batch's hosts. An
-- instance for which there is none (a full subnet, a host without a
-- subnet) stays pending with the reason as pending_reason and an
-- instance.unschedulable event; the reconciler's model counts addresses
-- too, so that is the rare case of a model behind the database. The
-- unique and exclusion constraints of instance_addresses make a double
-- allocation fail the batch rather than happen.
--
-- One instance.scheduled event per instance placed, in id order, then
-- the refusals.
CREATE OR REPLACE FUNCTION cloud_rec_place_many(p jsonb, p_actor text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    WITH x AS MATERIALIZED (
        SELECT x.id, x.version, x.host, i.name, h.name AS host_name, hs.subnet,
               row_number() OVER (PARTITION BY x.host ORDER BY x.id) AS k
          FROM jsonb_to_recordset(p) AS x(op text, id text, version bigint, host text)
          JOIN instances i ON i.id = x.id
          JOIN hosts h ON h.id = x.host AND h.state = 'ready'
          LEFT JOIN host_subnets hs ON hs.host_id = h.id
         WHERE x.op = 'place' AND i.version = x.version AND i.state = 'pending'
           AND i.host_id IS NULL AND i.desired_state = 'running'
           AND coalesce(i.next_restart_at <= now(), true)),
    -- per host of the batch, the lowest free offsets in its subnet, as
    -- many as the batch needs there: the gaps between the offsets held,
    -- with the gateway (1) and the broadcast address as fences. One jsonb
    -- object host -> [offsets], so each op finds its own by key (CTEs
    -- have no index: a join between two of them is a nested loop).
    hf AS MATERIALIZED (
        SELECT coalesce(jsonb_object_agg(nd.host, f.offs), '{}') AS m
          FROM (SELECT host, subnet, count(*) AS need FROM x
                 WHERE subnet IS NOT NULL GROUP BY host, subnet) nd
         CROSS JOIN LATERAL (
               SELECT coalesce(jsonb_agg(q.o ORDER BY q.o), '[]') AS offs
                 FROM (SELECT g.o
                         FROM (SELECT u.o + 1 AS lo, lead(u.o) OVER (ORDER BY u.o) - 1 AS hi
                                 FROM (SELECT a.address - set_masklen(nd.subnet::inet, 32) AS o
                                         FROM instance_addresses a WHERE a.host_id = nd.host
                                       UNION ALL SELECT 1
                                       UNION ALL SELECT (2::bigint ^ (32 - masklen(nd.subnet)))::bigint - 1) u) gp
                        CROSS JOIN LATERAL generate_series(gp.lo, least(gp.hi, gp.lo + nd.need - 1)) g(o)
                        WHERE gp.hi >= gp.lo
                        ORDER BY g.o LIMIT nd.need) q) f),
    -- the k-th op of a host takes its k-th free offset; NULL: none left
    pick AS MATERIALIZED (
        SELECT x.id, x.version, x.host, x.subnet, x.name, x.host_name,
               set_masklen(x.subnet::inet, 32) + (hf.m -> x.host ->> (x.k - 1)::integer)::bigint
                   AS address
          FROM x CROSS JOIN hf),
    placed AS (
        UPDATE instances i
           SET state = 'scheduled', host_id = pk.host, pending_reason = NULL,
               version = i.version + 1, updated_at = now()
          FROM pick pk
         WHERE i.id = pk.id AND pk.address IS NOT NULL AND i.version = pk.version
           AND i.state = 'pending' AND i.host_id IS NULL
        -- next_restart_at stays: when the last back-off ended (a record).
        RETURNING i.id, pk.host, pk.subnet, pk.address, pk.name, pk.host_name),
    addr AS (
        INSERT INTO instance_addresses (instance_id, host_id, subnet, address)
        SELECT id, host, subnet, address FROM placed),
    refused AS (
        UPDATE instances i
           SET pending_reason = w.reason, version = i.version + 1, updated_at = now()
          FROM (SELECT pk.id, pk.version,
                       CASE WHEN pk.subnet IS NULL
                            THEN format('host %s has no subnet: cluster_cidr has no free block for it',
                                        pk.host_name)
                            ELSE format('host %s: subnet %s has no free address', pk.host_name,
                                        pk.subnet)
                       END AS reason
                  FROM pick pk WHERE pk.address IS NULL) w
         WHERE i.id = w.id AND i.version = w.version AND i.state = 'pending'
           AND i.pending_reason IS DISTINCT FROM w.reason
        RETURNING i.id, i.name, w.reason)
    INSERT INTO events (type, object, object_id, name, message, actor)
    SELECT t, 'instance', id, name, msg, p_actor
      FROM (SELECT 1 AS o, 'instance.scheduled' AS t, pl.id, pl.name,
                   format('instance %s scheduled on %s, address %s', pl.name, pl.host_name,
                          host(pl.address)) AS msg
              FROM placed pl
            UNION ALL
            SELECT 2, 'instance.unschedulable', r.id, r.name,
                   format('instance %s cannot be placed: %s', r.name, r.reason)
              FROM refused r) e
     ORDER BY o, id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
