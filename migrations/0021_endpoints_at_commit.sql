-- Endpoints are recomputed once per service at commit, not once per
-- instance row (docs/decisions.md §23): the row triggers note the
-- service, these deferred ones recompute. Same conditions as the row
-- triggers, so a transaction that moves no endpoint queues nothing.
CREATE CONSTRAINT TRIGGER instances_endpoints_flush_del AFTER DELETE ON instances
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (old.state = 'running')
    EXECUTE FUNCTION cloud_endpoints_flush_trigger();
CREATE CONSTRAINT TRIGGER instances_endpoints_flush_upd AFTER UPDATE ON instances
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (old.state IS DISTINCT FROM new.state OR old.desired_state IS DISTINCT FROM new.desired_state
          OR old.addresses IS DISTINCT FROM new.addresses OR old.ready IS DISTINCT FROM new.ready
          OR old.service_id IS DISTINCT FROM new.service_id)
    EXECUTE FUNCTION cloud_endpoints_flush_trigger();
