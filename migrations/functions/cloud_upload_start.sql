-- Opens upload session p_id for p_actor (POST /v1/blobs/uploads). The
-- quota quotas.upload_sessions counts the sessions of the whole cluster
-- that are not idle past p_idle seconds; the count and the insert run
-- under one transaction-scoped advisory lock, so two replicas starting
-- sessions at once cannot both pass the last free place. Returns p_id.
CREATE OR REPLACE FUNCTION cloud_upload_start(p_id text, p_actor text, p_idle integer)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    lim bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('cloud_upload_start'));
    SELECT count(*) INTO n FROM upload_sessions
     WHERE updated_at > now() - make_interval(secs => p_idle);
    SELECT quota_upload_sessions INTO lim FROM cluster_settings WHERE id = 1;
    IF n >= lim THEN
        PERFORM cloud_raise('CLQTA', format('quota upload_sessions exceeded: %s uploads are '
            'in progress in the cluster, the quota is %s; finish or cancel one (sessions '
            'end after %s s idle) or raise quotas.upload_sessions in the cluster settings',
            n, lim, p_idle), 'quotas.upload_sessions');
    END IF;
    INSERT INTO upload_sessions (id, actor) VALUES (p_id, p_actor);
    RETURN p_id;
END $$;
