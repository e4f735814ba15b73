-- The subnet of host p_host_id: the one it holds, else the lowest free
-- block of host_subnet_prefix bits in cluster_cidr, recorded in
-- host_subnets. NULL when the cluster CIDR has no free block: the host
-- stays without a subnet (no instance is placed there, the scheduler says
-- "no subnet") and a host.network event says why; its next registration,
-- or a change of the settings, tries again. Allocations are serialised by
-- the event lock; the exclusion constraint on host_subnets
-- is the last line.
CREATE OR REPLACE FUNCTION cloud_host_subnet_alloc(p_host_id text) RETURNS cidr
LANGUAGE plpgsql AS $$
DECLARE
    s cluster_settings;
    got cidr;
    nblocks bigint;
    bsize bigint;
    base inet;
    hname text;
BEGIN
    SELECT subnet INTO got FROM host_subnets WHERE host_id = p_host_id;
    IF FOUND THEN
        RETURN got;
    END IF;
    -- The event lock (docs/decisions.md §11) serialises allocators too.
    PERFORM pg_advisory_xact_lock(726200101);
    SELECT * INTO s FROM cluster_settings WHERE id = 1;
    nblocks := (2::bigint ^ (s.host_subnet_prefix - masklen(s.cluster_cidr)))::bigint;
    bsize := (2::bigint ^ (32 - s.host_subnet_prefix))::bigint;
    base := set_masklen(network(s.cluster_cidr)::inet, s.host_subnet_prefix);
    -- The block after the highest one in the CIDR first (hosts join one
    -- after another: one probe), else the lowest free block.
    SELECT c INTO got
      FROM (SELECT set_masklen(set_masklen(max(hs.subnet)::inet, 32)
                               + (2::bigint ^ (32 - masklen(max(hs.subnet))))::bigint,
                               s.host_subnet_prefix)::cidr AS c
              FROM host_subnets hs WHERE hs.subnet <<= s.cluster_cidr) m
     WHERE c IS NOT NULL AND c <<= s.cluster_cidr
       AND NOT EXISTS (SELECT 1 FROM host_subnets o WHERE o.subnet && m.c);
    IF got IS NULL THEN
        SELECT (base + g * bsize)::cidr INTO got
          FROM generate_series(0::bigint, nblocks - 1) g
         WHERE NOT EXISTS (SELECT 1 FROM host_subnets o WHERE o.subnet && (base + g * bsize)::cidr)
         ORDER BY g LIMIT 1;
    END IF;
    SELECT name INTO hname FROM hosts WHERE id = p_host_id;
    IF got IS NULL THEN
        PERFORM cloud_event('host.network', 'host', p_host_id, hname,
            format('host %s has no subnet: cluster_cidr %s has no free /%s; no instance is '
                   'placed there until an operator widens cluster_cidr or hosts leave',
                   hname, s.cluster_cidr, s.host_subnet_prefix), 'controller');
        RETURN NULL;
    END IF;
    INSERT INTO host_subnets (host_id, subnet) VALUES (p_host_id, got);
    UPDATE hosts SET version = version + 1, updated_at = now() WHERE id = p_host_id;
    PERFORM cloud_event('host.network', 'host', p_host_id, hname,
        format('host %s: subnet %s, gateway %s', hname, got,
               host(set_masklen(got::inet, 32) + 1)), 'controller');
    RETURN got;
END $$;
