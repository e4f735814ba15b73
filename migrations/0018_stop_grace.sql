-- 0018: the stop grace period (issue 11 item 9). A TERM stop is an ACPI
-- shutdown, then a destroy when the guest has not powered off within the
-- grace period; it was 10 s for everything (the gateway's constant). Now:
--   services.stop_grace_seconds   every instance of the service (copied
--                                 into the instance, like labels)
--   instances.stop_grace_seconds  one-off instances (service instances:
--                                 their service's)
--   instances.kill_grace_seconds  the grace of one kill (POST .../kill
--                                 "grace_seconds"), for that stop only:
--                                 cleared when the instance runs again
-- The desired set sends coalesce(kill, stop) * 1000 in
-- InstanceSpec.stop_grace_period_ms. The API checks the range (1..3600,
-- controller/validate.c); the CHECKs hold it here too.

ALTER TABLE services ADD COLUMN stop_grace_seconds integer NOT NULL DEFAULT 10
    CHECK (stop_grace_seconds BETWEEN 1 AND 3600);
ALTER TABLE instances ADD COLUMN stop_grace_seconds integer NOT NULL DEFAULT 10
    CHECK (stop_grace_seconds BETWEEN 1 AND 3600);
ALTER TABLE instances ADD COLUMN kill_grace_seconds integer
    CHECK (kill_grace_seconds BETWEEN 1 AND 3600);

-- Service instances take their service's grace when they are made.
CREATE FUNCTION cloud_instance_inherit_stop_grace() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT s.stop_grace_seconds INTO NEW.stop_grace_seconds
      FROM services s WHERE s.id = NEW.service_id;
    NEW.stop_grace_seconds := coalesce(NEW.stop_grace_seconds, 10);
    RETURN NEW;
END $$;
CREATE TRIGGER instances_inherit_stop_grace BEFORE INSERT ON instances
    FOR EACH ROW WHEN (NEW.service_id IS NOT NULL)
    EXECUTE FUNCTION cloud_instance_inherit_stop_grace();

-- A kill's grace belongs to that stop: every new run clears stop_signal
-- (0003 rerun, 0008 start and restart), and with it the kill's grace.
-- Fires after instances_restart (triggers fire in name order), on the row
-- that trigger made.
CREATE FUNCTION cloud_instance_kill_grace_reset() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.kill_grace_seconds := NULL;
    RETURN NEW;
END $$;
CREATE TRIGGER instances_stop_grace_reset BEFORE UPDATE ON instances
    FOR EACH ROW WHEN (NEW.stop_signal IS NULL AND NEW.kill_grace_seconds IS NOT NULL)
    EXECUTE FUNCTION cloud_instance_kill_grace_reset();

-- Service JSON: the earlier shape with "stop_grace_seconds" appended (one
-- expression, inlined; services are few).
ALTER FUNCTION cloud_service_json RENAME TO cloud_service_json_pre0018;
CREATE FUNCTION cloud_service_json(s services) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT (left(cloud_service_json_pre0018(s)::text, -1) || ',"stop_grace_seconds":'
            || s.stop_grace_seconds::text || '}')::json
$$;

-- Instance JSON defined whole (0011's note: the wrapper's re-parse costs
-- a cache load 45%): 0011's shape with stop_grace_seconds.
CREATE OR REPLACE FUNCTION cloud_instance_json(i instances) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', i.id, 'name', i.name,
        'service', (SELECT name FROM services WHERE id = i.service_id),
        'generation', i.generation, 'image', i.image,
        'resources', json_build_object('vcpus', i.vcpus, 'memory_mib', i.memory_mib,
                                       'disk_gib', i.disk_gib),
        'args', i.args, 'env', i.env, 'restart', i.restart,
        'placement', json_build_object('constraints', i.constraints,
                                       'strategy', i.strategy,
                                       'max_per_host', i.max_per_host),
        'desired_state', i.desired_state, 'state', i.state,
        'stop_signal', i.stop_signal,
        'host', (SELECT name FROM hosts WHERE id = i.host_id),
        'exit_code', i.exit_code, 'reason', i.reason,
        'pending_reason', i.pending_reason, 'restart_count', i.restart_count,
        'addresses', i.addresses, 'config_version', i.config_version,
        'ready', i.ready, 'version', i.version,
        'created_at', cloud_ts(i.created_at), 'updated_at', cloud_ts(i.updated_at),
        'started_at', cloud_ts(i.started_at), 'finished_at', cloud_ts(i.finished_at),
        'labels', i.labels, 'stop_grace_seconds', i.stop_grace_seconds)
$$;

-- Service create: the earlier create, then the grace (only when given: the
-- default is the column's, and costs no second row version).
ALTER FUNCTION cloud_service_create RENAME TO cloud_service_create_pre0018;
CREATE FUNCTION cloud_service_create(p jsonb, p_idem text, p_actor text,
                                     OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    s services;
BEGIN
    SELECT f.status, f.body INTO status, body
      FROM cloud_service_create_pre0018(p - 'stop_grace_seconds', p_idem, p_actor) f;
    IF status = 201 AND p ? 'stop_grace_seconds' THEN
        UPDATE services SET stop_grace_seconds = (p->>'stop_grace_seconds')::integer
         WHERE id = body->>'id'
           AND stop_grace_seconds <> (p->>'stop_grace_seconds')::integer
        RETURNING * INTO s;
        IF FOUND THEN
            body := cloud_service_json(s);
        END IF;
    END IF;
END $$;

-- Service patch: the earlier patch (which counts the key as a change: a
-- new version, service.updated; not a new generation, as nothing inside
-- the guest changes), then the grace, which the live instances take at
-- once, each with an instance.updated event (their hosts get the new set).
ALTER FUNCTION cloud_service_patch RENAME TO cloud_service_patch_pre0018;
CREATE FUNCTION cloud_service_patch(p_name text, p jsonb, p_if_match bigint, p_actor text,
                                    OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    s services;
    i instances;
BEGIN
    SELECT f.status, f.body INTO status, body
      FROM cloud_service_patch_pre0018(p_name, p, p_if_match, p_actor) f;
    IF NOT p ? 'stop_grace_seconds' THEN
        RETURN;
    END IF;
    UPDATE services SET stop_grace_seconds = (p->>'stop_grace_seconds')::integer
     WHERE name = p_name AND stop_grace_seconds <> (p->>'stop_grace_seconds')::integer
    RETURNING * INTO s;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    body := cloud_service_json(s);
    FOR i IN UPDATE instances SET stop_grace_seconds = s.stop_grace_seconds,
                                  version = version + 1, updated_at = now()
              WHERE service_id = s.id AND desired_state <> 'deleted'
                AND stop_grace_seconds <> s.stop_grace_seconds
              RETURNING * LOOP
        PERFORM cloud_event('instance.updated', 'instance', i.id, i.name,
            format('instance %s: stop grace period %s s from service %s', i.name,
                   s.stop_grace_seconds, s.name), p_actor);
    END LOOP;
END $$;

-- One-off create: the earlier create, then the grace when given.
ALTER FUNCTION cloud_instance_create RENAME TO cloud_instance_create_pre0018;
CREATE FUNCTION cloud_instance_create(p jsonb, p_idem text, p_actor text,
                                      OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
DECLARE
    i instances;
BEGIN
    SELECT f.status, f.body INTO status, body
      FROM cloud_instance_create_pre0018(p - 'stop_grace_seconds', p_idem, p_actor) f;
    IF status = 201 AND p ? 'stop_grace_seconds' THEN
        UPDATE instances SET stop_grace_seconds = (p->>'stop_grace_seconds')::integer
         WHERE id = body->>'id'
           AND stop_grace_seconds <> (p->>'stop_grace_seconds')::integer
        RETURNING * INTO i;
        IF FOUND THEN
            body := cloud_instance_json(i);
        END IF;
    END IF;
END $$;

-- The bulk path: the earlier one as it is when no item sets a grace (the
-- hot path), else item by item after it.
ALTER FUNCTION cloud_instance_create_many RENAME TO cloud_instance_create_many_pre0018;
CREATE FUNCTION cloud_instance_create_many(p jsonb, p_actor text)
RETURNS TABLE (idx integer, status integer, body json, err_state text,
               err_message text, err_field text, event_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    i instances;
    g integer;
BEGIN
    IF NOT jsonb_path_exists(p, '$[*].stop_grace_seconds') THEN
        RETURN QUERY SELECT * FROM cloud_instance_create_many_pre0018(p, p_actor);
        RETURN;
    END IF;
    FOR r IN SELECT * FROM cloud_instance_create_many_pre0018(
                 (SELECT coalesce(jsonb_agg(x - 'stop_grace_seconds' ORDER BY o), '[]')
                    FROM jsonb_array_elements(p) WITH ORDINALITY AS t(x, o)),
                 p_actor) LOOP
        idx := r.idx; status := r.status; body := r.body; err_state := r.err_state;
        err_message := r.err_message; err_field := r.err_field; event_id := r.event_id;
        g := (p->r.idx->>'stop_grace_seconds')::integer;
        IF r.status = 201 AND g IS NOT NULL THEN
            UPDATE instances SET stop_grace_seconds = g
             WHERE id = r.body->>'id' AND stop_grace_seconds <> g
            RETURNING * INTO i;
            IF FOUND THEN
                body := cloud_instance_json(i);
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$;

-- Kill: the earlier kill, then the kill's own grace (NULL: the instance's).
-- A TERM kill of a placed instance only; a second kill without a grace
-- goes back to the instance's.
ALTER FUNCTION cloud_instance_kill RENAME TO cloud_instance_kill_pre0018;
CREATE FUNCTION cloud_instance_kill(p_ref text, p_signal text, p_if_match bigint,
                                    p_actor text, p_grace integer DEFAULT NULL,
                                    OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT f.status, f.body INTO status, body
      FROM cloud_instance_kill_pre0018(p_ref, p_signal, p_if_match, p_actor) f;
    -- In the same transaction as the earlier kill's instance.killed event,
    -- which makes the gateway send the host its new set.
    UPDATE instances SET kill_grace_seconds = p_grace
     WHERE id = body->>'id' AND stop_signal = 'TERM' AND state <> 'exited'
       AND kill_grace_seconds IS DISTINCT FROM p_grace;
END $$;

-- The batch's dispatcher: 0008's, with instance_kill's fifth argument
-- (the kill's grace in seconds, JSON null when not given).
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
          FROM cloud_instance_kill(a->>0, a->>1, (a->>2)::bigint, a->>3,
                                   (a->>4)::integer) f;
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
