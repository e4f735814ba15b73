-- 0008: start and restart, the rest of a process's life cycle.
--
-- start: an instance that has ended (exited, failed, lost) runs again: it
-- goes back to pending, unplaced, and the reconciler places it. Every run
-- after the first counts in restart_count; agents start an instance they
-- have seen end only when restart_count moves.
-- restart: a running instance is stopped (TERM, then the grace period) and
-- started again once it has ended: restart_requested carries the intent
-- across the stop, and the trigger below acts on it whoever reports the
-- end (the agent's status, a lost host, a kill before placement).

ALTER TABLE instances ADD COLUMN restart_requested boolean NOT NULL DEFAULT false;

CREATE FUNCTION cloud_instance_rerun(i instances, p_why text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE instances SET state = 'pending', desired_state = 'running', host_id = NULL,
           exit_code = NULL, reason = NULL, stop_signal = NULL, started_at = NULL,
           finished_at = NULL, restart_count = restart_count + 1,
           next_restart_at = NULL, restart_requested = false,
           pending_reason = p_why, version = version + 1, updated_at = now()
     WHERE id = i.id;
END $$;

CREATE FUNCTION cloud_instance_start(p_ref text, p_if_match bigint, p_actor text,
                                     OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    i := cloud_instance_lock(p_ref, p_if_match);
    IF i.desired_state = 'deleted' THEN
        PERFORM cloud_raise('CL409', format('instance %s is being deleted', i.name));
    END IF;
    IF i.state IN ('exited', 'failed', 'lost') THEN
        PERFORM cloud_instance_rerun(i, 'start requested');
        PERFORM cloud_event('instance.started', 'instance', i.id, i.name,
            format('instance %s: start requested (it had %s)', i.name, i.state), p_actor);
        status := 202;
    ELSIF i.desired_state = 'stopped' THEN
        PERFORM cloud_raise('CL409', format(
            'instance %s is still stopping; start it once it has exited (cloudctl wait)', i.name));
    ELSE
        status := 200; -- already meant to run
    END IF;
    SELECT cloud_instance_json(x) INTO body FROM instances x WHERE x.id = i.id;
END $$;

CREATE FUNCTION cloud_instance_restart(p_ref text, p_if_match bigint, p_actor text,
                                       OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    i := cloud_instance_lock(p_ref, p_if_match);
    IF i.desired_state = 'deleted' THEN
        PERFORM cloud_raise('CL409', format('instance %s is being deleted', i.name));
    END IF;
    IF i.state IN ('exited', 'failed', 'lost') THEN
        PERFORM cloud_instance_rerun(i, 'restart requested');
    ELSIF i.host_id IS NULL THEN
        -- Not placed yet: nothing to stop; it starts as it is.
        NULL;
    ELSE
        UPDATE instances SET desired_state = 'stopped', stop_signal = 'TERM',
               restart_requested = true, version = version + 1, updated_at = now()
         WHERE id = i.id;
    END IF;
    PERFORM cloud_event('instance.restart', 'instance', i.id, i.name,
        format('instance %s: restart requested', i.name), p_actor);
    status := 202;
    SELECT cloud_instance_json(x) INTO body FROM instances x WHERE x.id = i.id;
END $$;

-- A restart in progress: when the instance ends, it runs again.
CREATE FUNCTION cloud_instances_restart_trigger() RETURNS trigger
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
CREATE TRIGGER instances_restart BEFORE UPDATE ON instances
    FOR EACH ROW WHEN (NEW.restart_requested) EXECUTE FUNCTION cloud_instances_restart_trigger();

-- The batch's dispatcher (cloud_batch in 0002 calls it): every API write
-- operation, from 0002, 0005 (blobs, images), 0006 (tokens, audit) and this
-- migration. Its one definition.
CREATE OR REPLACE FUNCTION cloud_batch_one(op text, a jsonb, OUT st integer, OUT bd json)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    CASE op
    WHEN 'service_create' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_service_create((a->>0)::jsonb, a->>1, a->>2) f;
    WHEN 'service_patch' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_service_patch(a->>0, (a->>1)::jsonb, (a->>2)::bigint, a->>3) f;
    WHEN 'service_delete' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_service_delete(a->>0, (a->>1)::bigint, a->>2) f;
    WHEN 'instance_create' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_instance_create((a->>0)::jsonb, a->>1, a->>2) f;
    WHEN 'instance_kill' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_instance_kill(a->>0, a->>1, (a->>2)::bigint, a->>3) f;
    WHEN 'instance_delete' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_instance_delete(a->>0, (a->>1)::bigint, a->>2) f;
    WHEN 'instance_start' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_instance_start(a->>0, (a->>1)::bigint, a->>2) f;
    WHEN 'instance_restart' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_instance_restart(a->>0, (a->>1)::bigint, a->>2) f;
    WHEN 'host_action' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_host_action(a->>0, a->>1, (a->>2)::bigint, a->>3) f;
    WHEN 'blob_add' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_blob_add(a->>0, (a->>1)::bigint, a->>2) f;
    WHEN 'image_create' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_image_create((a->>0)::jsonb, a->>1) f;
    WHEN 'image_delete' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_image_delete(a->>0, a->>1) f;
    WHEN 'token_create' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_token_create(a->>0, a->>1, a->>2, (a->>3)::bigint, a->>4) f;
    WHEN 'token_revoke' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_token_revoke(a->>0, a->>1) f;
    WHEN 'audit' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_audit(a->>0, a->>1, (a->>2)::integer, a->>3) f;
    ELSE
        PERFORM cloud_raise('CL422', format('unknown batch operation %s', op));
    END CASE;
END $$;
