-- AFTER INSERT ON hosts: the new host's subnet (cloud_host_subnet_alloc).
CREATE OR REPLACE FUNCTION cloud_hosts_subnet_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cloud_host_subnet_alloc(NEW.id);
    RETURN NULL;
END $$;
