#!/usr/bin/env python3
"""labels_bench: what labels cost (issue 5).

Against a throwaway PostgreSQL and controller (tests/integration/harness.py,
no reconciler):
  1. cloud_instance_create_many() of 500 one-off instances with no labels
     and with 3 labels, alternated, medians (one psql session, so the
     figures are the database's work);
  2. GET /v1/instances?limit=100 from the read cache with and without label
     selectors over N instances (half of them labelled), median and p90;
  3. the SQL fallback of a selector list (used while the cache loads), by
     EXPLAIN ANALYZE of the same predicate.

Usage: CLOUD_CONTROLLER=build/controller/cloud-controller \
       bench/labels_bench.py [N] [ROUNDS]
"""

import os
import statistics
import subprocess
import sys
import time
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 8

ITEM = ("jsonb_build_object('image','hello:latest','name','%s-'||g,"
        "'resources',jsonb_build_object('vcpus',1,'memory_mib',64,'disk_gib',0),"
        "'args','[]'::jsonb,'env','{}'::jsonb,'restart','never',"
        "'placement',jsonb_build_object('constraints','[]'::jsonb,'strategy','spread',"
        "'max_per_host',0),'labels',%s)")
LABELS = ("jsonb_build_object('app','web','tier','front',"
          "'example.com/team','t'||mod(g,10))")


def psql_file(c, sql):
    path = os.path.join(c.tmp, "bench.sql")
    with open(path, "w") as f:
        f.write(sql)
    r = subprocess.run([os.path.join(harness.PG_BINDIR, "psql"), "-X", "-q", "-A", "-t",
                        "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(c.pg_port),
                        "-U", "postgres", "-d", "cloud", "-f", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("labels_bench: psql failed: " + r.stderr)
    return r.stdout


def create_many_sql(prefix, first, count, labels):
    items = ITEM % (prefix, labels)
    return ("SELECT count(*) FROM cloud_instance_create_many((SELECT jsonb_agg(%s) "
            "FROM generate_series(%d, %d) g), 'bench');\n" % (items, first, first + count - 1))


def main():
    c = harness.start()
    c.add_image("hello", "latest")
    try:
        # 1. The bulk create path.
        script = "\\timing on\n"
        for r in range(ROUNDS):
            script += create_many_sql("p%d" % r, 1, 500, "'{}'::jsonb")
            script += create_many_sql("l%d" % r, 1, 500, LABELS)
        times = [float(line.split()[1]) for line in psql_file(c, script).splitlines()
                 if line.startswith("Time:")]
        print("create_many, 500 instances: no labels median %.0f ms, 3 labels median %.0f ms"
              " (%d rounds)" % (statistics.median(times[0::2]), statistics.median(times[1::2]),
                                ROUNDS))
        # 2. Seed N instances, half labelled, and read through the cache.
        have = int(c.psql("SELECT count(*) FROM instances"))
        psql_file(c, create_many_sql("s", 1, max(N // 2 - have // 2, 0), "'{}'::jsonb") +
                  create_many_sql("t", 1, max(N // 2 - have // 2, 0), LABELS))
        total = int(c.psql("SELECT count(*) FROM instances"))
        c.restart_controller()
        time.sleep(3)  # the cache loads
        for sel in ([], ["example.com/team=t3"], ["app=web", "tier=front", "example.com/team=t9"],
                    ["tier"], ["nosuch=x"]):
            path = "/v1/instances?limit=100" + "".join("&label=" + quote(s) for s in sel)
            ts = []
            for _ in range(50):
                t = time.monotonic()
                st, _, body = harness.request("GET", path)
                ts.append((time.monotonic() - t) * 1000)
                assert st == 200, body
            ts.sort()
            print("GET %-78s %3d items: median %.2f ms, p90 %.2f ms (%d instances)"
                  % (path, len(body["items"]), statistics.median(ts), ts[44], total))
        # 3. The SQL fallback.
        for eq in ('{"example.com/team":"t3"}', '{"nosuch":"x"}'):
            out = c.psql("EXPLAIN (ANALYZE, TIMING OFF) SELECT i.id, cloud_instance_json(i) "
                         "FROM instances i WHERE i.labels @> '%s'::jsonb AND i.labels ?& "
                         "ARRAY(SELECT jsonb_array_elements_text('[]'::jsonb)) "
                         "ORDER BY i.id LIMIT 101" % eq)
            ex = [line.strip() for line in out.splitlines() if "Execution Time" in line]
            print("SQL fallback, label %s: %s" % (eq, ex[0] if ex else "?"))
    finally:
        harness.stop()


if __name__ == "__main__":
    main()
