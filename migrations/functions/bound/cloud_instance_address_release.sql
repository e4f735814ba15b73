-- AFTER UPDATE OF host_id ON instances, when the instance leaves its host:
-- its address in the old host's subnet is free again.
CREATE OR REPLACE FUNCTION cloud_instance_address_release() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM instance_addresses WHERE instance_id = OLD.id;
    RETURN NULL;
END $$;
