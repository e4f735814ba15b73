-- 0015: one lock order for every writing transaction.
--
-- cloud_event takes the event log's advisory lock (726200101) at a
-- transaction's first event and holds it to commit. A writer that locked
-- rows before its first event (an agent status batch: instance A, event,
-- instance B) could therefore wait for a row held by another writer that
-- was itself waiting for the advisory lock (the reconciler: instance B,
-- then its first event): a deadlock PostgreSQL broke after its 1 s
-- deadlock_timeout by failing one side (db.c retries it, but the second
-- was lost). Seen between config writes, reconcile batches and agent
-- status batches once guests acknowledged configs.
--
-- The rule from here on: every top-level writing function takes the
-- advisory lock FIRST, before any row lock, so row locks are only ever
-- taken by the one writer holding it and no cycle can form. Writers
-- already serialised on that lock from their first event to their commit,
-- so this costs little: the lock is held from the start instead of from
-- the first event. Each function keeps its body under the name
-- <name>_unlocked; the public name becomes a wrapper that locks and calls
-- it. cloud_instance_create_many (0007/0011) already locks first.

ALTER FUNCTION cloud_batch(jsonb, boolean) RENAME TO cloud_batch_unlocked;
CREATE FUNCTION cloud_batch(p jsonb, p_safe boolean)
RETURNS TABLE (idx integer, status integer, body json, err_state text,
               err_message text, err_field text, event_id bigint)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    RETURN QUERY SELECT * FROM cloud_batch_unlocked(p, p_safe);
END $$;

ALTER FUNCTION cloud_reconcile(bigint, text, jsonb) RENAME TO cloud_reconcile_unlocked;
CREATE FUNCTION cloud_reconcile(p_epoch bigint, p_actor text, p jsonb)
RETURNS TABLE (kind text, id text)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    RETURN QUERY SELECT * FROM cloud_reconcile_unlocked(p_epoch, p_actor, p);
END $$;

ALTER FUNCTION cloud_rec_liveness(bigint, text, bigint) RENAME TO cloud_rec_liveness_unlocked;
CREATE FUNCTION cloud_rec_liveness(p_epoch bigint, p_actor text, p_since_ms bigint)
RETURNS TABLE (kind text, id text)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    RETURN QUERY SELECT * FROM cloud_rec_liveness_unlocked(p_epoch, p_actor, p_since_ms);
END $$;

ALTER FUNCTION cloud_lease_acquire(text, bigint, integer) RENAME TO cloud_lease_acquire_unlocked;
CREATE FUNCTION cloud_lease_acquire(p_holder text, p_epoch bigint, p_secs integer)
RETURNS TABLE (epoch bigint, now_ms bigint, took_over boolean)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    RETURN QUERY SELECT * FROM cloud_lease_acquire_unlocked(p_holder, p_epoch, p_secs);
END $$;

ALTER FUNCTION cloud_settings_patch(jsonb, bigint, text) RENAME TO cloud_settings_patch_unlocked;
CREATE FUNCTION cloud_settings_patch(p jsonb, p_if_match bigint, p_actor text,
                                     OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    SELECT u.status, u.body INTO status, body
      FROM cloud_settings_patch_unlocked(p, p_if_match, p_actor) u;
END $$;

ALTER FUNCTION cloud_agent_register(jsonb) RENAME TO cloud_agent_register_unlocked;
CREATE FUNCTION cloud_agent_register(p jsonb, OUT host_id text, OUT session_epoch bigint)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    SELECT u.host_id, u.session_epoch INTO host_id, session_epoch
      FROM cloud_agent_register_unlocked(p) u;
END $$;

ALTER FUNCTION cloud_agent_heartbeats(jsonb) RENAME TO cloud_agent_heartbeats_unlocked;
CREATE FUNCTION cloud_agent_heartbeats(p jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    RETURN cloud_agent_heartbeats_unlocked(p);
END $$;

ALTER FUNCTION cloud_agent_status(jsonb, boolean) RENAME TO cloud_agent_status_unlocked;
CREATE FUNCTION cloud_agent_status(p jsonb, p_safe boolean)
RETURNS TABLE (idx integer, refused text)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    RETURN QUERY SELECT * FROM cloud_agent_status_unlocked(p, p_safe);
END $$;

ALTER FUNCTION cloud_config_write(text, text, jsonb, bigint, text)
    RENAME TO cloud_config_write_unlocked;
CREATE FUNCTION cloud_config_write(p_name text, p_mode text, p jsonb, p_if_match bigint,
                                   p_actor text, OUT status integer, OUT body json,
                                   OUT version bigint)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    SELECT u.status, u.body, u.version INTO status, body, version
      FROM cloud_config_write_unlocked(p_name, p_mode, p, p_if_match, p_actor) u;
END $$;

ALTER FUNCTION cloud_join_complete(text, text, text, text, timestamptz, text)
    RENAME TO cloud_join_complete_unlocked;
CREATE FUNCTION cloud_join_complete(p_id text, p_sha256_hex text, p_host text, p_serial text,
                                    p_not_after timestamptz, p_addr text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    RETURN cloud_join_complete_unlocked(p_id, p_sha256_hex, p_host, p_serial, p_not_after, p_addr);
END $$;

ALTER FUNCTION cloud_cert_revoke(text, text, text) RENAME TO cloud_cert_revoke_unlocked;
CREATE FUNCTION cloud_cert_revoke(p_serial text, p_host text, p_actor text)
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(726200101);
    RETURN cloud_cert_revoke_unlocked(p_serial, p_host, p_actor);
END $$;
