-- Service instances take their service's grace when they are made.
CREATE OR REPLACE FUNCTION cloud_instance_inherit_stop_grace() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT s.stop_grace_seconds INTO NEW.stop_grace_seconds
      FROM services s WHERE s.id = NEW.service_id;
    NEW.stop_grace_seconds := coalesce(NEW.stop_grace_seconds, 10);
    RETURN NEW;
END $$;
