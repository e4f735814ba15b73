-- Reconciler SQL benchmark (issue 13): what one reconcile decision costs in
-- PostgreSQL, called directly in one session (no controller). Seeds 100
-- ready hosts and 20,000 pending one-off instances, then times
-- cloud_reconcile with batches of 1,000 ops: places, unplaceable
-- explanations, and creates of a service's instances (10,000 replicas).
-- Prints "what|total ms|ms per decision".
-- Run it on a new, empty database migrated by the build:
--
--   createdb -h HOST -p PORT -U postgres rb
--   build/controller/cloud-controller migrate --db "host=HOST port=PORT user=postgres dbname=rb"
--   psql -X -At -v ON_ERROR_STOP=1 -h HOST -p PORT -U postgres rb -f bench/reconcile_sql_bench.sql
--
-- It writes rows: use a throwaway database.
\set QUIET 1
INSERT INTO blobs (digest, size) VALUES ('sha256:' || repeat('b', 64), 1);
INSERT INTO images (id, name, tag, kind, kernel_digest, cmdline, size)
  VALUES ('00000000000000b1', 'bench', 'latest', 'kernel', 'sha256:' || repeat('b', 64), 'console=ttyS0', 1);
UPDATE cluster_settings SET quota_instances = 1000000;
UPDATE leader_lease SET holder = 'bench', epoch = 1, expires_at = now() + interval '1 hour' WHERE id = 1;
INSERT INTO hosts (id, name, address, labels, cap_vcpus, cap_memory_mib, cap_disk_gib,
                   hypervisor, arch, last_seen, session_epoch)
  SELECT 'h' || g, 'bench-hv' || g, '127.0.0.1', '{}', 128, 262144, 1000, 'qemu', 'x86_64', now(), 1
    FROM generate_series(1, 100) g;
INSERT INTO instances (id, name, image, vcpus, memory_mib, disk_gib)
  SELECT lpad(to_hex(g), 16, '0'), 'seed-' || g, 'bench', 1, 64, 0 FROM generate_series(1, 20000) g;
ANALYZE;
CREATE TEMP TABLE t (what text, ms numeric, n integer);
DO $$
DECLARE t0 timestamptz; ops jsonb;
BEGIN
  t0 := clock_timestamp();
  FOR b IN 0..9 LOOP
    SELECT jsonb_agg(jsonb_build_object('op', 'place', 'id', id, 'version', version,
                                        'host', 'h' || (1 + n % 100)))
      INTO ops FROM (SELECT id, version, row_number() OVER () AS n FROM instances
                      ORDER BY id OFFSET b * 1000 LIMIT 1000) s;
    PERFORM count(*) FROM cloud_reconcile(1, 'bench', ops);
  END LOOP;
  INSERT INTO t VALUES ('place', extract(epoch FROM clock_timestamp() - t0) * 1000, 10000);
  t0 := clock_timestamp();
  FOR b IN 10..19 LOOP
    SELECT jsonb_agg(jsonb_build_object('op', 'unplaceable', 'id', id, 'version', version,
                                        'reason', 'no host has 1 vCPU free'))
      INTO ops FROM (SELECT id, version FROM instances
                      ORDER BY id OFFSET b * 1000 LIMIT 1000) s;
    PERFORM count(*) FROM cloud_reconcile(1, 'bench', ops);
  END LOOP;
  INSERT INTO t VALUES ('unplaceable', extract(epoch FROM clock_timestamp() - t0) * 1000, 10000);
  -- a service as the API's validation fills it in (validate.c)
  PERFORM cloud_service_create('{"name":"big","image":"bench","resources":{"vcpus":1,"memory_mib":64,"disk_gib":0},"args":[],"env":{},"ports":[],"restart":"always","placement":{"constraints":[],"strategy":"spread","max_per_host":0},"partition_policy":"keep","links":[],"replicas":10000,"rollout":{"max_unavailable":1,"max_surge":1},"labels":{},"stop_grace_seconds":30,"ready_when":"running"}'::jsonb, NULL, 'bench');
  t0 := clock_timestamp();
  FOR b IN 0..9 LOOP
    SELECT jsonb_agg(jsonb_build_object('op', 'create', 'service', s.id, 'version', s.version,
                                        'reason', 'service big wants 10000 replicas'))
      INTO ops FROM services s, generate_series(1, 1000) WHERE s.name = 'big';
    PERFORM count(*) FROM cloud_reconcile(1, 'bench', ops);
  END LOOP;
  INSERT INTO t VALUES ('create', extract(epoch FROM clock_timestamp() - t0) * 1000, 10000);
END $$;
SELECT what, round(ms), round(ms / n, 3) FROM t;
SELECT 'check: scheduled ' || count(*) FILTER (WHERE state = 'scheduled') ||
       ', explained ' || count(*) FILTER (WHERE pending_reason IS NOT NULL) ||
       ', of big ' || count(*) FILTER (WHERE service_id IS NOT NULL) ||
       ' (ordinals 1-' || max(ordinal) || ')' ||
       ', events ' || (SELECT count(*) FROM events) FROM instances;
