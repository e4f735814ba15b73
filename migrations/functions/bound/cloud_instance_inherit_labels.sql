-- A service's instance starts with the service's labels.
CREATE OR REPLACE FUNCTION cloud_instance_inherit_labels() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.labels = '{}'::jsonb THEN
        NEW.labels := coalesce((SELECT labels FROM services WHERE id = NEW.service_id), '{}');
    END IF;
    RETURN NEW;
END $$;
