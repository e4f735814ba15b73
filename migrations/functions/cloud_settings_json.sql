-- The cluster settings as the API shows them (GET/PATCH
-- /v1/cluster/settings). Built as jsonb, so keys come out in jsonb's
-- order, as they always have.
CREATE OR REPLACE FUNCTION cloud_settings_json(s cluster_settings) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('down_after_seconds', s.down_after_seconds,
        'fence_after_seconds', s.fence_after_seconds,
        'cluster_cidr', s.cluster_cidr::text,
        'host_subnet_prefix', s.host_subnet_prefix,
        'version', s.version, 'updated_at', cloud_ts(s.updated_at),
        'events_retention', jsonb_build_object(
            'max_age_seconds', s.events_max_age_seconds,
            'max_events', s.events_max_events),
        'quotas', jsonb_build_object(
            'services', s.quota_services, 'instances', s.quota_instances,
            'images', s.quota_images, 'tokens', s.quota_tokens,
            'upload_sessions', s.quota_upload_sessions,
            'blob_bytes', s.quota_blob_bytes),
        'blobs', jsonb_build_object(
            'gc_grace_seconds', s.blob_gc_grace_seconds,
            'min_free_bytes', s.blob_min_free_bytes))::json
$$;
