-- Leaving running (an exit, a lost host, a restart) ends the guest's run.
CREATE OR REPLACE FUNCTION cloud_instances_ready_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.ready := false;
    RETURN NEW;
END $$;
