-- Versions kept per service (older ones are pruned on write).
CREATE OR REPLACE FUNCTION cloud_config_keep() RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT 100::bigint $$;
