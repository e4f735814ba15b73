-- A restart in progress: when the instance ends, it runs again.
CREATE OR REPLACE FUNCTION cloud_instances_restart_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.restart_requested AND NEW.state IN ('exited', 'failed', 'lost')
       AND NEW.desired_state <> 'deleted' THEN
        NEW.state := 'pending';
        NEW.desired_state := 'running';
        NEW.host_id := NULL;
        NEW.exit_code := NULL;
        NEW.reason := NULL;
        NEW.stop_signal := NULL;
        NEW.started_at := NULL;
        NEW.finished_at := NULL;
        NEW.restart_count := NEW.restart_count + 1;
        NEW.next_restart_at := NULL;
        NEW.restart_requested := false;
        NEW.pending_reason := 'restart requested';
    END IF;
    RETURN NEW;
END $$;
