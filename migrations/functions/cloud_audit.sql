-- An API request that was refused or failed, for the audit trail (the
-- successful ones are audited by the event of the change they made).
CREATE OR REPLACE FUNCTION cloud_audit(p_actor text, p_what text, p_status integer,
                            p_message text, OUT status integer, OUT body json)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cloud_event(CASE WHEN p_status IN (401, 403) THEN 'api.denied'
                             ELSE 'api.failed' END,
        'api', NULL, p_what,
        format('%s: %s -> %s %s', p_actor, p_what, p_status, p_message), p_actor);
    status := 200;
    body := '{}'::json;
END $$;
