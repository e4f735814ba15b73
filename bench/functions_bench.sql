-- Functions benchmark (issue 12): times the SQL functions that were
-- collapsed from layered wrappers into one definition each
-- (docs/decisions.md §18), called directly in one session, without HTTP,
-- the writer or the cache in the way. Prints "what|milliseconds".
-- Run it on a new, empty database migrated by the build to measure:
--
--   createdb -h HOST -p PORT -U postgres fb
--   build/controller/cloud-controller migrate --db "host=HOST port=PORT user=postgres dbname=fb"
--   psql -X -At -v ON_ERROR_STOP=1 -h HOST -p PORT -U postgres fb -f bench/functions_bench.sql
--
-- It writes rows (services, instances, events): use a throwaway database.
\set QUIET 1
INSERT INTO blobs (digest, size) VALUES ('sha256:' || repeat('b', 64), 1);
INSERT INTO images (id, name, tag, kind, kernel_digest, cmdline, size)
  VALUES ('00000000000000b1', 'bench', 'latest', 'kernel', 'sha256:' || repeat('b', 64), 'console=ttyS0', 1);
UPDATE cluster_settings SET quota_services = 100000, quota_instances = 1000000;
CREATE TEMP TABLE t (what text, ms numeric);
DO $$
DECLARE t0 timestamptz; r record; body text := '{"image":"bench","resources":{"vcpus":1,"memory_mib":64,"disk_gib":0},"args":[],"env":{},"ports":[{"name":"http","port":80}],"restart":"always","placement":{"constraints":[],"strategy":"spread","max_per_host":0},"partition_policy":"keep","links":[],"replicas":1,"rollout":{"max_unavailable":1,"max_surge":1},"labels":{"tier":"front"},"stop_grace_seconds":30,"ready_when":"guest"}';
  ibody text := '{"image":"bench","resources":{"vcpus":1,"memory_mib":64,"disk_gib":0},"args":[],"env":{},"restart":"never","placement":{"constraints":[],"strategy":"spread","max_per_host":0},"labels":{"k":"v"},"stop_grace_seconds":7}';
  many jsonb;
BEGIN
  t0 := clock_timestamp();
  FOR k IN 1..2000 LOOP
    PERFORM cloud_service_create(jsonb_set(body::jsonb, '{name}', to_jsonb('s' || k)), NULL, 'bench');
  END LOOP;
  INSERT INTO t VALUES ('service create x2000', extract(epoch FROM clock_timestamp() - t0) * 1000);
  t0 := clock_timestamp();
  FOR k IN 1..2000 LOOP
    PERFORM cloud_service_patch('s' || k, jsonb_build_object('labels', jsonb_build_object('tier', 'back'), 'replicas', 2, 'stop_grace_seconds', 20), NULL, 'bench');
  END LOOP;
  INSERT INTO t VALUES ('service patch x2000', extract(epoch FROM clock_timestamp() - t0) * 1000);
  t0 := clock_timestamp();
  FOR k IN 1..20 LOOP
    PERFORM count(cloud_service_json(s)::text) FROM services s;
  END LOOP;
  INSERT INTO t VALUES ('service json x40000', extract(epoch FROM clock_timestamp() - t0) * 1000);
  t0 := clock_timestamp();
  FOR k IN 1..5000 LOOP
    PERFORM cloud_instance_create(ibody::jsonb, NULL, 'bench');
  END LOOP;
  INSERT INTO t VALUES ('instance create x5000', extract(epoch FROM clock_timestamp() - t0) * 1000);
  SELECT jsonb_agg(ibody::jsonb) INTO many FROM generate_series(1, 100);
  t0 := clock_timestamp();
  FOR k IN 1..50 LOOP
    PERFORM count(*) FROM cloud_instance_create_many(many, 'bench');
  END LOOP;
  INSERT INTO t VALUES ('instance create_many 50x100', extract(epoch FROM clock_timestamp() - t0) * 1000);
  SELECT jsonb_agg(jsonb_set(ibody::jsonb, '{stop_grace_seconds}', 'null'::jsonb) - 'stop_grace_seconds') INTO many FROM generate_series(1, 100);
  t0 := clock_timestamp();
  FOR k IN 1..50 LOOP
    PERFORM count(*) FROM cloud_instance_create_many(many, 'bench');
  END LOOP;
  INSERT INTO t VALUES ('instance create_many 50x100, no grace', extract(epoch FROM clock_timestamp() - t0) * 1000);
  t0 := clock_timestamp();
  FOR r IN SELECT id FROM instances WHERE name LIKE 'run-%' LIMIT 3000 LOOP
    PERFORM cloud_instance_kill(r.id, 'TERM', NULL, 'bench', 5);
  END LOOP;
  INSERT INTO t VALUES ('instance kill x3000', extract(epoch FROM clock_timestamp() - t0) * 1000);
  t0 := clock_timestamp();
  FOR r IN SELECT id FROM instances WHERE name LIKE 'run-%' AND state = 'exited' LIMIT 3000 LOOP
    PERFORM cloud_instance_start(r.id, NULL, 'bench');
  END LOOP;
  INSERT INTO t VALUES ('instance start x3000', extract(epoch FROM clock_timestamp() - t0) * 1000);
  t0 := clock_timestamp();
  FOR r IN SELECT id FROM instances WHERE name LIKE 'run-%' LIMIT 3000 LOOP
    PERFORM cloud_instance_restart(r.id, NULL, 'bench');
  END LOOP;
  INSERT INTO t VALUES ('instance restart x3000', extract(epoch FROM clock_timestamp() - t0) * 1000);
  t0 := clock_timestamp();
  FOR k IN 1..2000 LOOP
    PERFORM cloud_instance_create(ibody::jsonb, 'idem-' || k, 'bench');
  END LOOP;
  INSERT INTO t VALUES ('instance create x2000 with a new idempotency key', extract(epoch FROM clock_timestamp() - t0) * 1000);
  t0 := clock_timestamp();
  FOR k IN 1..2000 LOOP
    PERFORM cloud_instance_create(ibody::jsonb, 'idem-' || k, 'bench');
  END LOOP;
  INSERT INTO t VALUES ('instance create x2000 replayed by its key', extract(epoch FROM clock_timestamp() - t0) * 1000);
  -- The reconciler's batches hold the lease of epoch 1.
  UPDATE leader_lease SET holder = 'bench', epoch = 1, expires_at = now() + interval '1 hour';
  t0 := clock_timestamp();
  FOR r IN SELECT jsonb_agg(jsonb_build_object('op', 'unplaceable', 'id', id, 'version', version,
                                               'reason', 'no host (bench)')) AS ops
             FROM (SELECT id, version, (row_number() OVER (ORDER BY id) - 1) / 20 AS b
                     FROM instances WHERE state = 'pending' LIMIT 4000) x GROUP BY b LOOP
    PERFORM count(*) FROM cloud_reconcile(1, 'bench', r.ops);
  END LOOP;
  INSERT INTO t VALUES ('cloud_reconcile 200x20 unplaceable', extract(epoch FROM clock_timestamp() - t0) * 1000);
  t0 := clock_timestamp();
  FOR k IN 1..1000 LOOP
    PERFORM cloud_settings_patch(jsonb_build_object('down_after_seconds', 30 + k % 2, 'quotas', jsonb_build_object('tokens', 100 + k % 2)), NULL, 'bench');
  END LOOP;
  INSERT INTO t VALUES ('settings patch x1000', extract(epoch FROM clock_timestamp() - t0) * 1000);
  t0 := clock_timestamp();
  FOR k IN 1..200 LOOP
    PERFORM count(*) FROM cloud_batch((SELECT jsonb_agg(jsonb_build_object('op', 'instance_create', 'args', jsonb_build_array(ibody, NULL, 'bench'))) FROM generate_series(1, 10)), false);
  END LOOP;
  INSERT INTO t VALUES ('cloud_batch 200x10 instance_create', extract(epoch FROM clock_timestamp() - t0) * 1000);
END $$;
SELECT what || '|' || round(ms) FROM t;
