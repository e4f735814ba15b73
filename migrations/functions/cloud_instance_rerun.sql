-- Back to pending for another run (restart, start, a restart policy): the
-- last run's fields cleared; the caller writes the event.
CREATE OR REPLACE FUNCTION cloud_instance_rerun(i instances, p_why text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE instances SET state = 'pending', desired_state = 'running', host_id = NULL,
           exit_code = NULL, reason = NULL, stop_signal = NULL, started_at = NULL,
           finished_at = NULL, restart_count = restart_count + 1,
           next_restart_at = NULL, restart_requested = false,
           pending_reason = p_why, version = version + 1, updated_at = now()
     WHERE id = i.id;
END $$;
