-- The group-committed writes of controller/writer.c (docs/decisions.md
-- §1): p is an array of {op, args}, run in order through cloud_batch_one;
-- one result row per item. p_safe: each item in its own subtransaction,
-- so a failing item fails alone (the writer's retry after a fast-path
-- failure). Takes the event lock first (§11). Audit items (refused or
-- failed requests) are written together first, in one statement
-- (cloud_audit_many), and answer 200 {} without an event id.
CREATE OR REPLACE FUNCTION cloud_batch(p jsonb, p_safe boolean)
RETURNS TABLE (idx integer, status integer, body json, err_state text,
               err_message text, err_field text, event_id bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    item jsonb;
    i integer := 0;
    r record;
    e_state text;
    e_msg text;
    e_col text;
BEGIN
    -- The event lock before any row lock (docs/decisions.md §11).
    PERFORM pg_advisory_xact_lock(726200101);
    PERFORM cloud_audit_many(p);
    FOR item IN SELECT value FROM jsonb_array_elements(p) LOOP
        idx := i;
        err_state := NULL;
        err_message := NULL;
        err_field := NULL;
        IF item->>'op' = 'audit' THEN
            status := 200;
            body := '{}'::json;
            event_id := NULL;
            RETURN NEXT;
            i := i + 1;
            CONTINUE;
        ELSIF NOT p_safe THEN
            r := cloud_batch_one(item->>'op', item->'args');
            status := r.st;
            body := r.bd;
        ELSE
            BEGIN
                r := cloud_batch_one(item->>'op', item->'args');
                status := r.st;
                body := r.bd;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE,
                                        e_msg = MESSAGE_TEXT,
                                        e_col = COLUMN_NAME;
                status := NULL;
                body := NULL;
                err_state := e_state;
                err_message := e_msg;
                err_field := nullif(e_col, '');
            END;
        END IF;
        event_id := nullif(current_setting('cloud.last_event', true), '')::bigint;
        RETURN NEXT;
        i := i + 1;
    END LOOP;
END $$;
