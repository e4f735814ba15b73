-- 0017: the instance labels check runs when labels are written, not on
-- every UPDATE of an instance (issue 6; docs/benchmarks.md "Live config").
--
-- 0011's CHECK called cloud_labels_ok (an SQL function over jsonb_each)
-- for every row of every UPDATE of instances, whatever it changed: a
-- status batch of 100 acks, which writes only config_version, ready and
-- addresses, spent about a fifth of its time there. A BEFORE INSERT OR
-- UPDATE OF labels trigger applies the same rule with the same SQLSTATE
-- (23514, check_violation), constraint name and message, so callers see
-- no difference; it fires after instances_inherit_labels (triggers fire
-- in name order), on the labels the row will have, as the CHECK did.
-- Services keep their CHECK: they are written rarely.

ALTER TABLE instances DROP CONSTRAINT instances_labels_check;

CREATE FUNCTION cloud_instances_labels_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (jsonb_typeof(NEW.labels) = 'object' AND cloud_labels_ok(NEW.labels)) THEN
        RAISE EXCEPTION 'new row for relation "instances" violates check constraint "instances_labels_check"'
            USING ERRCODE = 'check_violation', TABLE = 'instances',
                  CONSTRAINT = 'instances_labels_check';
    END IF;
    RETURN NEW;
END $$;

-- No labels (the common case) costs no function call at all.
CREATE TRIGGER instances_labels_check BEFORE INSERT OR UPDATE OF labels ON instances
    FOR EACH ROW WHEN (NEW.labels IS DISTINCT FROM '{}'::jsonb)
    EXECUTE FUNCTION cloud_instances_labels_trigger();
