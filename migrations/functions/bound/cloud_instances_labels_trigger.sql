-- The instances' labels CHECK, as a trigger that runs only for rows with
-- labels (a CHECK ran for every insert).
CREATE OR REPLACE FUNCTION cloud_instances_labels_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (jsonb_typeof(NEW.labels) = 'object' AND cloud_labels_ok(NEW.labels)) THEN
        RAISE EXCEPTION 'new row for relation "instances" violates check constraint "instances_labels_check"'
            USING ERRCODE = 'check_violation', TABLE = 'instances',
                  CONSTRAINT = 'instances_labels_check';
    END IF;
    RETURN NEW;
END $$;
