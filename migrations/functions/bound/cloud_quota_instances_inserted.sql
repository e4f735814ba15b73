-- Only one-off instances count (a service's replicas are bounded by the
-- service's replicas); the WHEN clauses keep the agents' status updates
-- and the reconciler's service instances free of any function call.
-- Inserts count once per statement: a bulk create of 1,000 one-off
-- instances is one counter update, not 1,000.
CREATE OR REPLACE FUNCTION cloud_quota_instances_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    d bigint;
BEGIN
    SELECT count(*) INTO d FROM inserted
     WHERE service_id IS NULL AND desired_state <> 'deleted';
    IF d > 0 THEN
        PERFORM cloud_quota_take('instances', d);
    END IF;
    RETURN NULL;
END $$;
