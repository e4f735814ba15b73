-- IPAM (issue 15, docs/network.md, docs/decisions.md §34): the cluster
-- CIDR and the host subnet size are cluster settings; each host holds at
-- most one subnet of the CIDR, each placed instance one address of its
-- host's subnet. Double allocation is impossible by constraint: subnets
-- cannot overlap (exclusion over inet_ops, core GiST), an address is
-- unique and belongs to one instance, and the composite foreign key with
-- the CHECK keep it inside its host's subnet, above the gateway (.1) and
-- below the broadcast address. The allocators are
-- cloud_host_subnet_alloc and cloud_rec_place_many.
ALTER TABLE cluster_settings
    ADD COLUMN cluster_cidr cidr DEFAULT '10.128.0.0/9' NOT NULL,
    ADD COLUMN host_subnet_prefix integer DEFAULT 22 NOT NULL,
    ADD CONSTRAINT cluster_settings_cluster_cidr_check
        CHECK (family(cluster_cidr) = 4 AND masklen(cluster_cidr) BETWEEN 8 AND 29),
    ADD CONSTRAINT cluster_settings_host_subnet_prefix_check
        CHECK (host_subnet_prefix BETWEEN 16 AND 29
               AND host_subnet_prefix >= masklen(cluster_cidr));

CREATE TABLE host_subnets (
    host_id text COLLATE pg_catalog."C" NOT NULL
        REFERENCES hosts(id) ON DELETE CASCADE,
    subnet cidr NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT host_subnets_pkey PRIMARY KEY (host_id),
    CONSTRAINT host_subnets_host_subnet_key UNIQUE (host_id, subnet),
    CONSTRAINT host_subnets_subnet_check
        CHECK (family(subnet) = 4 AND masklen(subnet) BETWEEN 16 AND 29),
    CONSTRAINT host_subnets_no_overlap EXCLUDE USING gist (subnet inet_ops WITH &&)
);

CREATE TABLE instance_addresses (
    instance_id text COLLATE pg_catalog."C" NOT NULL
        REFERENCES instances(id) ON DELETE CASCADE,
    host_id text COLLATE pg_catalog."C" NOT NULL,
    subnet cidr NOT NULL,
    address inet NOT NULL,
    CONSTRAINT instance_addresses_pkey PRIMARY KEY (instance_id),
    CONSTRAINT instance_addresses_address_key UNIQUE (address),
    CONSTRAINT instance_addresses_subnet_fkey FOREIGN KEY (host_id, subnet)
        REFERENCES host_subnets(host_id, subnet) ON DELETE CASCADE,
    CONSTRAINT instance_addresses_address_check
        CHECK (masklen(address) = 32 AND address << subnet
               AND address > set_masklen(subnet::inet, 32) + 1
               AND address < set_masklen(broadcast(subnet), 32))
);
CREATE INDEX instance_addresses_host ON instance_addresses (host_id, address);

-- A host gets its subnet when its row is made (an agent's first Hello, or
-- a row an operator or a test inserts); cloud_agent_register retries for a
-- host that has none.
CREATE TRIGGER hosts_subnet_alloc AFTER INSERT ON hosts
    FOR EACH ROW EXECUTE FUNCTION cloud_hosts_subnet_trigger();
-- An instance that leaves its host (a restart elsewhere, a rerun) gives
-- its address back; deleting the instance does by the foreign key. Not
-- "UPDATE OF host_id": that fires only when the statement names the
-- column, and the instances_restart trigger clears host_id in a BEFORE
-- trigger of an UPDATE that names state.
CREATE TRIGGER instances_address_release AFTER UPDATE ON instances
    FOR EACH ROW WHEN (old.host_id IS NOT NULL AND old.host_id IS DISTINCT FROM new.host_id)
    EXECUTE FUNCTION cloud_instance_address_release();
