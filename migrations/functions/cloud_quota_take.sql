-- Adds d to a quota's counter; a positive d past the quota is refused.
CREATE OR REPLACE FUNCTION cloud_quota_take(p_kind text, d bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    now_used bigint;
    lim bigint;
BEGIN
    UPDATE quota_usage SET used = used + d WHERE kind = p_kind
    RETURNING used INTO now_used;
    IF d <= 0 THEN
        RETURN;
    END IF;
    SELECT CASE p_kind WHEN 'services' THEN quota_services
                       WHEN 'instances' THEN quota_instances
                       WHEN 'images' THEN quota_images
                       WHEN 'tokens' THEN quota_tokens
                       ELSE quota_blob_bytes END
      INTO lim FROM cluster_settings WHERE id = 1;
    IF now_used > lim THEN
        PERFORM cloud_raise('CLQTA', CASE p_kind
            WHEN 'blob_bytes' THEN format('quota blob_bytes exceeded: the blobs would take %s bytes, '
                'the quota is %s; delete images (unreferenced blobs are collected) '
                'or raise quotas.blob_bytes in the cluster settings', now_used, lim)
            WHEN 'instances' THEN format('quota instances exceeded: %s one-off instances exist, '
                'the quota is %s; delete some or raise quotas.instances in the cluster settings',
                now_used - d, lim)
            ELSE format('quota %s exceeded: %s %s exist, the quota is %s; delete some '
                'or raise quotas.%s in the cluster settings', p_kind, now_used - d, p_kind,
                lim, p_kind) END,
            'quotas.' || p_kind);
    END IF;
END $$;
