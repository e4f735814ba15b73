-- A kill's grace belongs to that stop: every new run clears stop_signal
-- (cloud_instance_rerun, cloud_instance_start and
-- cloud_instance_restart), and with it the kill's grace.
-- Fires after instances_restart (triggers fire in name order), on the row
-- that trigger made.
CREATE OR REPLACE FUNCTION cloud_instance_kill_grace_reset() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.kill_grace_seconds := NULL;
    RETURN NEW;
END $$;
