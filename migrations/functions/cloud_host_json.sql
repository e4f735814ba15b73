-- A host as the API shows it.
CREATE OR REPLACE FUNCTION cloud_host_json(h hosts) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', h.id, 'name', h.name, 'address', h.address,
        'state', h.state, 'labels', h.labels,
        'capacity', json_build_object('vcpus', h.cap_vcpus,
                                      'memory_mib', h.cap_memory_mib,
                                      'disk_gib', h.cap_disk_gib),
        'allocated', json_build_object('vcpus', coalesce(a.vcpus, 0),
                                       'memory_mib', coalesce(a.memory_mib, 0),
                                       'disk_gib', coalesce(a.disk_gib, 0)),
        'hypervisor', h.hypervisor, 'arch', h.arch,
        'subnet', (SELECT hs.subnet::text FROM host_subnets hs WHERE hs.host_id = h.id),
        'underlay_address', h.underlay_address,
        'session_epoch', h.session_epoch, 'last_seen', cloud_ts(h.last_seen),
        'instances', coalesce(a.n, 0), 'version', h.version,
        'created_at', cloud_ts(h.created_at), 'updated_at', cloud_ts(h.updated_at))
      FROM (SELECT sum(vcpus) AS vcpus, sum(memory_mib) AS memory_mib,
                   sum(disk_gib) AS disk_gib, count(*) AS n
              FROM instances
             WHERE host_id = h.id
               AND state NOT IN ('exited', 'failed', 'lost')) a
$$;
