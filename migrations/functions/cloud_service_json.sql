-- A service as the API shows it. One expression without FROM, so that
-- PostgreSQL inlines it into the caller's query (a FROM clause here made
-- every row a separate function call: 6x slower on a cache load).
CREATE OR REPLACE FUNCTION cloud_service_json(s services) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', s.id, 'name', s.name, 'image', s.image,
        'resources', json_build_object('vcpus', s.vcpus, 'memory_mib', s.memory_mib,
                                       'disk_gib', s.disk_gib),
        'args', s.args, 'env', s.env, 'ports', s.ports, 'restart', s.restart,
        'placement', json_build_object('constraints', s.constraints,
                                       'strategy', s.strategy,
                                       'max_per_host', s.max_per_host),
        'partition_policy', s.partition_policy, 'links', s.links,
        'replicas', s.replicas,
        'rollout', json_build_object('max_unavailable', s.max_unavailable,
                                     'max_surge', s.max_surge),
        'generation', s.generation, 'state', s.state, 'version', s.version,
        'created_at', cloud_ts(s.created_at), 'updated_at', cloud_ts(s.updated_at),
        'ready_when', s.ready_when, 'labels', s.labels,
        'stop_grace_seconds', s.stop_grace_seconds)
$$;
