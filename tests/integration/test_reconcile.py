"""The reconciler against a real PostgreSQL: docs/reconciler.md.

Agents come later, so hosts are rows (registered: session_epoch 1) that a
background thread heartbeats (hosts.last_seen = now()), and "the agent" is
SQL that moves instances scheduled -> running, exits them, or confirms the
removal of deleted ones, each change with its event as a real agent's would
have (the reconciler follows the event stream).

Every test pins its instances to its own hosts with a label constraint
(t=<tag>), so tests do not place on each other's hosts.
"""

import http.client
import json
import os
import re
import threading
import time
import unittest

import harness
from harness import poll, request, unique_name

LEASE = 4  # seconds; the module's controllers use --lease-seconds 4
IMAGE = "hello:latest"


def psql(sql):
    return harness.psql(sql)


def rows(sql):
    out = psql(sql)
    return [line.split("|") for line in out.splitlines() if line]


class Heartbeat:
    """Keeps hosts alive: last_seen = now() every 0.5 s for the names in it."""

    def __init__(self):
        self.names = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.wait(0.5):
            with self.lock:
                names = sorted(self.names)
            if not names:
                continue
            try:
                psql("UPDATE hosts SET last_seen = now() WHERE name IN (%s)"
                     % ",".join("'%s'" % n for n in names))
            except Exception:  # noqa: BLE001 - PostgreSQL may be restarting
                pass

    def add(self, name):
        with self.lock:
            self.names.add(name)

    def drop(self, name):
        with self.lock:
            self.names.discard(name)


HB = None


def setUpModule():
    global HB
    # Pages of 7 instances: every full load of the mirror spans many pages
    # (the default is 5000), so the tests below run on paged loads.
    c = harness.start(reconcile=True,
                      controller_args=["--lease-seconds", str(LEASE), "--load-page", "7"])
    c.add_image("hello", "latest")
    c.add_image("hello", "v2")
    HB = Heartbeat()
    poll(lambda: psql("SELECT holder FROM leader_lease WHERE expires_at > now()"), 20,
         what="a leader")


def tearDownModule():
    if HB:
        HB.stop.set()
    harness.stop()


# ---- fixtures ------------------------------------------------------------------

def add_host(tag, vcpus=8, memory_mib=16384, heartbeat=True, last_seen="now()"):
    """A registered host labelled t=tag, announced with an event."""
    c = harness.cluster()
    name = unique_name("hv")
    hid = c.add_host(name, labels={"t": tag}, vcpus=vcpus, memory_mib=memory_mib)
    psql("UPDATE hosts SET session_epoch = 1, last_seen = %s, version = version + 1 "
         "WHERE id = '%s'; SELECT cloud_event('host.registered', 'host', '%s', '%s', "
         "'host %s registered (test)', 'agent');" % (last_seen, hid, hid, name, name))
    if heartbeat:
        HB.add(name)
    return name, hid


def create_service(tag, replicas, **extra):
    name = unique_name("s")
    body = {"name": name, "image": IMAGE, "replicas": replicas,
            "resources": {"vcpus": 1, "memory_mib": 256},
            "placement": {"constraints": ["t=%s" % tag]}}
    body.update(extra)
    st, _, svc = request("POST", "/v1/services", body)
    assert st == 201, (st, svc)
    return svc


def create_instance(tag, restart, memory_mib=256):
    st, _, inst = request("POST", "/v1/instances", {
        "image": IMAGE, "name": unique_name("run"), "restart": restart,
        "resources": {"vcpus": 1, "memory_mib": memory_mib},
        "placement": {"constraints": ["t=%s" % tag]}})
    assert st == 201, (st, inst)
    return inst


def instances(service_name, live_only=True):
    """[(id, name, state, desired, host name, generation)] of a service."""
    return [tuple(r) for r in rows(
        "SELECT i.id, i.name, i.state, i.desired_state, coalesce(h.name, ''), i.generation "
        "FROM instances i JOIN services s ON s.id = i.service_id "
        "LEFT JOIN hosts h ON h.id = i.host_id WHERE s.name = '%s' %s ORDER BY i.name"
        % (service_name, "AND i.desired_state <> 'deleted'" if live_only else ""))]


def inst_row(inst_id):
    r = rows("SELECT state, coalesce(exit_code::text, ''), restart_count, "
             "coalesce(pending_reason, ''), coalesce((SELECT name FROM hosts WHERE id = host_id), ''), "
             "desired_state FROM instances WHERE id = '%s'" % inst_id)
    return tuple(r[0]) if r else None


def events(where, since=0):
    """[(id, type, name, message, actor)] with id > since matching where."""
    return [tuple(r) for r in rows(
        "SELECT id, type, coalesce(name, ''), message, actor FROM events "
        "WHERE id > %d AND (%s) ORDER BY id" % (since, where))]


def explained_pending(tag, n):
    """n one-off instances that fit nowhere, once the leader has explained
    each (it leaves them pending): (ids, {id: version})."""
    ids = [create_instance(tag, "never", memory_mib=65536)["id"] for _ in range(n)]
    for i in ids:
        poll(lambda: inst_row(i)[3], 15, what="explained by the leader")
    return ids, {i: int(psql("SELECT version FROM instances WHERE id = '%s'" % i)) for i in ids}


def last_event_id():
    return int(psql("SELECT coalesce(max(id), 0) FROM events"))


def agent_set(sql_where, state, exit_code=None):
    """The agent reports state for the instances matching sql_where."""
    code = "NULL" if exit_code is None else str(exit_code)
    psql("WITH u AS (UPDATE instances SET state = '%s', exit_code = %s, "
         "started_at = CASE WHEN '%s' = 'running' THEN now() ELSE started_at END, "
         "finished_at = CASE WHEN '%s' IN ('exited', 'failed') THEN now() ELSE NULL END, "
         "version = version + 1, updated_at = now() WHERE %s RETURNING id, name) "
         "SELECT count(cloud_event('instance.state', 'instance', u.id, u.name, "
         "format('instance %%s %s (test agent)', u.name), 'agent')) FROM u"
         % (state, code, state, state, sql_where, state))


def agent_run_scheduled(hosts):
    agent_set("state = 'scheduled' AND host_id IN (SELECT id FROM hosts WHERE name IN (%s))"
              % ",".join("'%s'" % h for h in hosts), "running")


def agent_remove_deleted(hosts):
    """The agent stopped and removed what is being deleted on these hosts."""
    psql("WITH d AS (DELETE FROM instances WHERE desired_state = 'deleted' AND host_id IN "
         "(SELECT id FROM hosts WHERE name IN (%s)) RETURNING id, name) "
         "SELECT count(cloud_event('instance.deleted', 'instance', d.id, d.name, "
         "format('instance %%s deleted: removed (test agent)', d.name), 'agent')) FROM d"
         % ",".join("'%s'" % h for h in hosts))


def barrier(tag):
    """Returns once the reconciler has made a decision after this call: a new
    one-off instance placed. Whatever was changed before was seen by it."""
    inst = create_instance(tag, "never", memory_mib=16)
    poll(lambda: inst_row(inst["id"])[0] == "scheduled", 15, what="barrier instance placed")
    request("DELETE", "/v1/instances/%s" % inst["id"])


class ReconcileTests(harness.TestCase):

    def test_scale_up_and_down(self):
        tag = unique_name("sc")
        h1, _ = add_host(tag)
        h2, _ = add_host(tag)
        svc = create_service(tag, 3)
        got = poll(lambda: (lambda l: l if len(l) == 3 and all(x[2] == "scheduled" for x in l)
                            else None)(instances(svc["name"])), 15,
                   what="3 instances scheduled")
        self.assertEqual([x[1] for x in got], ["%s-%d" % (svc["name"], k) for k in (1, 2, 3)])
        self.assertTrue(all(x[4] in (h1, h2) for x in got), got)
        # spread: both hosts used
        self.assertEqual({x[4] for x in got}, {h1, h2})
        for x in got:
            ev = events("type = 'instance.scheduled' AND object_id = '%s'" % x[0])
            self.assertEqual(len(ev), 1, ev)
            # with the address IPAM gave it in the host's subnet
            addr = harness.psql("SELECT host(address) FROM instance_addresses "
                                "WHERE instance_id = '%s'" % x[0])
            self.assertTrue(addr, "instance %s has no address" % x[1])
            self.assertEqual(ev[0][3], "instance %s scheduled on %s, address %s"
                             % (x[1], x[4], addr))
            self.assertTrue(ev[0][4].startswith("reconciler/"), ev)
        created = events("type = 'instance.created' AND name LIKE '%s-%%'" % svc["name"])
        self.assertIn("wants 3 replicas", created[0][3])

        # scale down: the newest goes first
        self.assertStatus(request("PATCH", "/v1/services/%s" % svc["name"], {"replicas": 2}), 200)
        live = poll(lambda: (lambda l: l if len(l) == 2 else None)(instances(svc["name"])), 15,
                    what="2 live instances")
        self.assertEqual([x[1] for x in live], ["%s-1" % svc["name"], "%s-2" % svc["name"]])
        ev = events("type = 'instance.deleting' AND name = '%s-3'" % svc["name"])
        self.assertEqual(len(ev), 1, ev)
        self.assertIn("scaled to 2 replicas", ev[0][3])
        # the agent removes it; scale to 0 of unplaced + placed
        agent_remove_deleted([h1, h2])
        self.assertStatus(request("PATCH", "/v1/services/%s" % svc["name"], {"replicas": 0}), 200)
        poll(lambda: instances(svc["name"]) == [], 15, what="no live instance")
        agent_remove_deleted([h1, h2])
        self.assertEqual(instances(svc["name"], live_only=False), [])

    def test_scale_up_creates_lowest_free_ordinal(self):
        tag = unique_name("ord")
        h, _ = add_host(tag)
        svc = create_service(tag, 3)
        poll(lambda: len(instances(svc["name"])) == 3, 15, what="3 instances")
        victim = [x for x in instances(svc["name"]) if x[1].endswith("-2")][0]
        # the instance is deleted behind the service's back (kill + rm)
        self.assertIn(request("DELETE", "/v1/instances/%s" % victim[0])[0], (200, 202))
        agent_remove_deleted([h])
        got = poll(lambda: (lambda l: l if len(l) == 3 and all(x[0] != victim[0] for x in l)
                            else None)(instances(svc["name"])), 15, what="a replacement")
        self.assertEqual(sorted(x[1] for x in got),
                         sorted("%s-%d" % (svc["name"], k) for k in (1, 2, 3)))

    def test_pending_reason_when_nothing_fits(self):
        tag = unique_name("pr")
        add_host(tag, memory_mib=1024)
        svc = create_service(tag, 1, resources={"vcpus": 1, "memory_mib": 4096})
        got = poll(lambda: (lambda l: l if l and l[0][2] == "pending" else None)(
            instances(svc["name"])), 15, what="a pending instance")
        iid = got[0][0]
        reason = poll(lambda: inst_row(iid)[3], 15, what="pending_reason")
        self.assertRegex(reason, r"^0/\d+ hosts fit: ")
        self.assertIn("insufficient memory", reason)
        barrier(tag)
        barrier(tag)
        # written once, not at every pass
        ev = events("type = 'instance.unschedulable' AND object_id = '%s'" % iid)
        self.assertEqual(len(ev), 1, ev)
        self.assertIn(reason, ev[0][3])
        self.assertEqual(inst_row(iid)[0], "pending")
        # room appears: it is placed and the reason goes
        add_host(tag, memory_mib=8192)
        poll(lambda: inst_row(iid)[0] == "scheduled", 15, what="placed once a host fits")
        self.assertEqual(inst_row(iid)[3], "")

    def test_batch_place_and_explain_check_each_op(self):
        """cloud_reconcile applies place and unplaceable ops set-based: each
        op still checks its instance's version and state and its host. Run
        in a transaction that is rolled back, so the leader never sees it."""
        tag = unique_name("sb")
        _, up = add_host(tag, memory_mib=1024)
        _, down = add_host(tag, memory_mib=1024, heartbeat=False)
        psql("UPDATE hosts SET state = 'down' WHERE id = '%s'" % down)
        ids, ver = explained_pending(tag, 5)
        ops = [
            {"op": "place", "id": ids[0], "version": ver[ids[0]], "host": up},        # placed
            {"op": "place", "id": ids[1], "version": ver[ids[1]] - 1, "host": up},    # stale
            {"op": "place", "id": ids[2], "version": ver[ids[2]], "host": down},      # host down
            {"op": "unplaceable", "id": ids[3], "version": ver[ids[3]], "reason": "r2"},  # new
            {"op": "unplaceable", "id": ids[4], "version": ver[ids[4]] + 1, "reason": "r2"},  # stale
            {"op": "unplaceable", "id": ids[3], "version": ver[ids[3]] + 1, "reason": "r2"},  # same
        ]
        inlist = ",".join("'%s'" % i for i in ids)
        out = psql(
            "BEGIN; "
            "SELECT string_agg(kind || ':' || id, ',' ORDER BY id) FROM cloud_reconcile("
            "(SELECT epoch FROM leader_lease), 'test', '%s'::jsonb); "
            "SELECT string_agg(id || '~' || state || '~' || coalesce(pending_reason, '') || '~' "
            "|| coalesce(host_id, ''), '^' ORDER BY id) FROM instances WHERE id IN (%s); "
            "SELECT string_agg(type || ':' || object_id, ',' ORDER BY id) FROM events "
            "WHERE actor = 'test'; ROLLBACK;" % (json.dumps(ops), inlist)).splitlines()
        returned, state, evs = out[0], out[1], out[2]
        self.assertEqual(sorted(returned.split(",")), sorted("instance:" + i for i in ids + [ids[3]]))
        st = {f.split("~")[0]: f.split("~")[1:] for f in state.split("^")}
        self.assertEqual(st[ids[0]][0], "scheduled")
        self.assertEqual(st[ids[0]][1:], ["", up])
        for i in ids[1:]:
            self.assertEqual(st[i][0], "pending", i)
            self.assertEqual(st[i][2], "", i)
        self.assertEqual(st[ids[3]][1], "r2")
        self.assertNotEqual(st[ids[4]][1], "r2")
        # one event per row changed; the repeated reason wrote nothing
        self.assertEqual(evs, "instance.scheduled:%s,instance.unschedulable:%s" % (ids[0], ids[3]))
        for i in ids:
            request("DELETE", "/v1/instances/%s" % i)

    def test_batch_retire_checks_each_op(self):
        """cloud_reconcile applies retire ops set-based
        (cloud_rec_retire_many): an unplaced instance goes now, a placed
        one is marked for deletion with TERM, and an op whose instance
        moved on (another version, or being deleted already) does nothing.
        In a transaction that is rolled back, as above."""
        tag = unique_name("rt")
        _, up = add_host(tag, memory_mib=1024)
        ids, ver = explained_pending(tag, 4)
        # 0 goes, 1 is stale, 2 (running, below) stops, 3 (deleting) is left
        ops = [{"op": "retire", "id": ids[k], "version": ver[ids[k]] + dv, "reason": "r%d" % k}
               for k, dv in ((0, 0), (1, -1), (2, 1), (3, 1))]
        inlist = ",".join("'%s'" % i for i in ids)
        out = psql(
            "BEGIN; "
            "UPDATE instances SET state = 'running', host_id = '%s', version = version + 1 "
            "WHERE id = '%s'; "
            "UPDATE instances SET desired_state = 'deleted', version = version + 1 "
            "WHERE id = '%s'; "
            "SELECT string_agg(kind || ':' || id, ',' ORDER BY id) FROM cloud_reconcile("
            "(SELECT epoch FROM leader_lease), 'test', '%s'::jsonb); "
            "SELECT string_agg(id || '~' || desired_state || '~' || coalesce(stop_signal, ''), "
            "'^' ORDER BY id) FROM instances WHERE id IN (%s); "
            "SELECT string_agg(type || ':' || object_id || ':' || message, ',' ORDER BY id) "
            "FROM events WHERE actor = 'test'; ROLLBACK;"
            % (up, ids[2], ids[3], json.dumps(ops), inlist)).splitlines()
        returned, state, evs = out[0], out[1], out[2]
        self.assertEqual(sorted(returned.split(",")), sorted("instance:" + i for i in ids))
        st = {f.split("~")[0]: f.split("~")[1:] for f in state.split("^")}
        self.assertNotIn(ids[0], st)
        self.assertEqual(st[ids[1]], ["running", ""])
        self.assertEqual(st[ids[2]], ["deleted", "TERM"])
        self.assertEqual(st[ids[3]], ["deleted", ""])
        name = {i: psql("SELECT name FROM instances WHERE id = '%s'" % i) for i in ids}
        self.assertEqual(evs.split(","), sorted([
            "instance.deleted:%s:instance %s deleted: r0" % (ids[0], name[ids[0]]),
            "instance.deleting:%s:instance %s: deleting: r2" % (ids[2], name[ids[2]])],
            key=lambda e: e.split(":")[1]))
        for i in ids:
            request("DELETE", "/v1/instances/%s" % i)

    def test_restart_on_failure_with_backoff_and_limit(self):
        tag = unique_name("rs")
        h, _ = add_host(tag)
        inst = create_instance(tag, "on-failure:2")
        iid = inst["id"]
        poll(lambda: inst_row(iid)[0] == "scheduled", 15, what="scheduled")
        for attempt, backoff in ((1, 1), (2, 2)):
            agent_set("id = '%s'" % iid, "running")
            agent_set("id = '%s'" % iid, "exited", 1)
            ev = poll(lambda: events("type = 'instance.restarting' AND object_id = '%s'" % iid)[attempt - 1:],
                      15, what="restart %d" % attempt)[0]
            self.assertEqual(ev[3], "instance %s restarting after exit 1 (attempt %d, back-off %d s)"
                             % (inst["name"], attempt, backoff))
            poll(lambda: inst_row(iid)[0] == "scheduled", 15, what="placed again after back-off")
            self.assertEqual(inst_row(iid)[2], str(attempt))
            # not placed before its back-off ended (database clock): the
            # placement's event is later than next_restart_at, which is
            # backoff s after the restart's transaction began
            gap = rows(
                "SELECT extract(epoch FROM s.time - i.next_restart_at), "
                "extract(epoch FROM i.next_restart_at - r.time) FROM events r, events s, instances i "
                "WHERE r.id = %s AND s.object_id = '%s' AND s.type = 'instance.scheduled' "
                "AND s.id > r.id AND i.id = '%s' ORDER BY s.id LIMIT 1" % (ev[0], iid, iid))[0]
            self.assertGreaterEqual(float(gap[0]), 0.0, "placed %s s before its back-off ended" % gap[0])
            self.assertAlmostEqual(float(gap[1]), backoff, delta=0.5)
        # the third failure: on-failure:2 allows no more
        agent_set("id = '%s'" % iid, "running")
        agent_set("id = '%s'" % iid, "exited", 1)
        ev = poll(lambda: events("type = 'instance.not_restarted' AND object_id = '%s'" % iid),
                  15, what="not restarted")
        self.assertIn("on-failure:2", ev[0][3])
        barrier(tag)
        self.assertEqual(inst_row(iid)[:3], ("exited", "1", "2"))
        self.assertEqual(len(events("type = 'instance.not_restarted' AND object_id = '%s'" % iid)), 1)

    def test_restart_never_and_always(self):
        tag = unique_name("rn")
        add_host(tag)
        never = create_instance(tag, "never")
        always = create_instance(tag, "always")
        onf = create_instance(tag, "on-failure")
        for i in (never, always, onf):
            poll(lambda: inst_row(i["id"])[0] == "scheduled", 15, what="scheduled")
            agent_set("id = '%s'" % i["id"], "running")
        agent_set("id = '%s'" % never["id"], "exited", 1)
        agent_set("id = '%s'" % always["id"], "exited", 0)
        agent_set("id = '%s'" % onf["id"], "exited", 0)
        poll(lambda: events("type = 'instance.restarting' AND object_id = '%s'" % always["id"]),
             15, what="always restarts after exit 0")
        barrier(tag)
        self.assertEqual(inst_row(never["id"])[:3], ("exited", "1", "0"))
        self.assertEqual(inst_row(onf["id"])[:3], ("exited", "0", "0"))
        self.assertEqual(events("type = 'instance.restarting' AND object_id IN ('%s', '%s')"
                                % (never["id"], onf["id"])), [])
        # a killed (desired stopped) instance is never restarted
        poll(lambda: inst_row(always["id"])[0] == "scheduled", 15, what="always placed again")
        self.assertEqual(request("POST", "/v1/instances/%s/kill" % always["id"], {})[0], 202)
        agent_set("id = '%s'" % always["id"], "exited", 143)
        barrier(tag)
        self.assertEqual(inst_row(always["id"])[0], "exited")

    def test_service_instance_restarts(self):
        tag = unique_name("sr")
        add_host(tag)
        svc = create_service(tag, 1, restart="on-failure")
        got = poll(lambda: (lambda l: l if l and l[0][2] == "scheduled" else None)(
            instances(svc["name"])), 15, what="scheduled")
        iid = got[0][0]
        agent_set("id = '%s'" % iid, "running")
        agent_set("id = '%s'" % iid, "failed")
        ev = poll(lambda: events("type = 'instance.restarting' AND object_id = '%s'" % iid), 15,
                  what="restart of a failed service instance")
        self.assertIn("restarting after failure (attempt 1, back-off 1 s)", ev[0][3])
        poll(lambda: inst_row(iid)[0] == "scheduled", 15, what="placed again")
        self.assertEqual(len(instances(svc["name"])), 1)

    def test_rollout_respects_max_unavailable_and_surge(self):
        tag = unique_name("ro")
        hosts = [add_host(tag)[0] for _ in range(2)]
        R = 4
        svc = create_service(tag, R, rollout={"max_unavailable": 1, "max_surge": 1})
        poll(lambda: sum(1 for x in instances(svc["name"]) if x[2] == "scheduled") == R, 15,
             what="%d scheduled" % R)
        agent_run_scheduled(hosts)
        since = last_event_id()
        st, _, body = request("PATCH", "/v1/services/%s" % svc["name"], {"image": "hello:v2"})
        self.assertEqual((st, body["generation"]), (200, 2), body)
        deadline = time.monotonic() + 60
        max_live, min_avail = 0, R
        while True:
            snap = rows("SELECT count(*) FILTER (WHERE i.desired_state <> 'deleted'), "
                        "count(*) FILTER (WHERE i.desired_state <> 'deleted' AND i.state = 'running'), "
                        "count(*) FILTER (WHERE i.desired_state <> 'deleted' AND i.state = 'running' "
                        "AND i.generation = 2) FROM instances i JOIN services s ON s.id = i.service_id "
                        "WHERE s.name = '%s'" % svc["name"])[0]
            live, avail, done = (int(x) for x in snap)
            max_live, min_avail = max(max_live, live), min(min_avail, avail)
            self.assertLessEqual(live, R + 1, "more than replicas + max_surge live")
            self.assertGreaterEqual(avail, R - 1, "more than max_unavailable down")
            if done == R and live == R:
                break
            self.assertLess(time.monotonic(), deadline, "rollout did not finish: %r"
                            % (instances(svc["name"], live_only=False),))
            # the agent: start what was placed, remove what was retired
            agent_run_scheduled(hosts)
            agent_remove_deleted(hosts)
            time.sleep(0.2)
        # (whether R + 1 is ever committed depends on the agent's timing:
        # a create and a retire may land in one batch)
        self.assertGreaterEqual(max_live, R)
        ro = events("type = 'service.rollout' AND name = '%s'" % svc["name"], since)
        self.assertTrue(ro, "no rollout event")
        self.assertRegex(ro[0][3], r"^rollout of %s to generation 2: \d/%d updated$" % (svc["name"], R))
        poll(lambda: events("type = 'service.rollout' AND name = '%s' AND message LIKE '%%complete%%'"
                            % svc["name"], since), 15, what="rollout complete event")
        retired = events("type IN ('instance.deleting', 'instance.deleted') AND name LIKE '%s-%%' "
                         "AND actor LIKE 'reconciler/%%'" % svc["name"], since)
        self.assertEqual(len(retired), R, retired)
        self.assertTrue(all("replaced by generation 2" in e[3] for e in retired), retired)

    def test_settings_api(self):
        st, _, s = request("GET", "/v1/cluster/settings")
        self.assertEqual(st, 200, s)
        self.assertIsInstance(s["down_after_seconds"], int)
        self.assertIsInstance(s["version"], int)
        for bad in (4, 3601, "10", 5.5, None, True):
            self.assertError(request("PATCH", "/v1/cluster/settings", {"down_after_seconds": bad}),
                             422, "invalid", "down_after_seconds")
        self.assertError(request("PATCH", "/v1/cluster/settings", {"down_after": 10}),
                         422, "invalid", "down_after")
        self.assertError(request("PATCH", "/v1/cluster/settings", b"[1]",
                                 {"Content-Type": "application/json"}), 400, "bad_request")
        self.assertError(request("PATCH", "/v1/cluster/settings", {"down_after_seconds": 30},
                                 {"If-Match": "999999"}), 412, "precondition_failed")
        st, _, same = request("PATCH", "/v1/cluster/settings", {})
        self.assertEqual((st, same["version"]), (200, s["version"]))
        self.assertEqual(request("PUT", "/v1/cluster/settings", {})[0], 405)
        # a viewer may read, not write
        st, _, tok = request("POST", "/v1/tokens", {"name": unique_name("viewer"), "role": "viewer"})
        self.assertEqual(st, 201, tok)
        hdr = {"Authorization": "Bearer " + tok["secret"]}
        # (the token cache learns new tokens from the event stream)
        poll(lambda: request("GET", "/v1/cluster/settings", headers=hdr)[0] == 200, 10,
             what="the viewer token accepted")
        self.assertEqual(request("PATCH", "/v1/cluster/settings", {"down_after_seconds": 30},
                                 headers=hdr)[0], 403)

    def test_liveness_down_lost_replaced_and_restart_safe(self):
        tag = unique_name("lv")
        a, aid = add_host(tag)
        b, _ = add_host(tag)
        st, _, s = request("PATCH", "/v1/cluster/settings",
                           {"down_after_seconds": 7, "fence_after_seconds": 3})
        self.assertEqual((st, s["down_after_seconds"]), (200, 7), s)
        ev = events("type = 'controller.settings'")
        self.assertIn("down_after_seconds", ev[-1][3])
        try:
            # partition_policy stop: the lost instance is deleted and
            # replaced under its own name (keep: chaos_partition)
            svc = create_service(tag, 2, placement={"constraints": ["t=%s" % tag], "max_per_host": 1},
                                 partition_policy="stop")
            got = poll(lambda: (lambda l: l if len(l) == 2 and all(x[2] == "scheduled" for x in l)
                                else None)(instances(svc["name"])), 15, what="2 scheduled")
            on_a = [x for x in got if x[4] == a][0]
            agent_run_scheduled([a, b])
            # host a stops heartbeating
            HB.drop(a)
            down = poll(lambda: events("type = 'host.down' AND object_id = '%s'" % aid), 20,
                        what="host %s down" % a)
            self.assertRegex(down[0][3], r"^host %s down: no heartbeat for \d+ s$" % a)
            silent = float(psql("SELECT extract(epoch FROM e.time - h.last_seen) FROM events e, hosts h "
                                "WHERE e.id = %s AND h.id = '%s'" % (down[0][0], aid)))
            self.assertGreaterEqual(silent, 7.0, "down after %.2f s of silence" % silent)
            lost = events("type = 'instance.lost' AND object_id = '%s'" % on_a[0])
            self.assertEqual(len(lost), 1)
            self.assertIn("instance %s lost with host %s" % (on_a[1], a), lost[0][3])
            self.assertEqual(inst_row(on_a[0])[0], "lost")
            # max_per_host 1 and one host left: the replacement waits, named
            # as the lost one was
            rep = poll(lambda: [x for x in instances(svc["name"]) if x[0] != on_a[0] and x[1] == on_a[1]],
                       15, what="a replacement for %s" % on_a[1])
            self.assertEqual(rep[0][2], "pending")
            b2, _ = add_host(tag)
            poll(lambda: inst_row(rep[0][0])[0] == "scheduled" and inst_row(rep[0][0])[4] == b2, 15,
                 what="replacement placed on the new host")

            # A controller restart must not declare a silent host down
            # before down_after has passed under the new leader.
            c = harness.cluster()
            c.stop_controller()
            c_name, c_id = add_host(tag, heartbeat=False, last_seen="now() - interval '1 hour'")
            c.start_controller()
            elected = poll(lambda: events("type = 'controller.elected'",
                                          int(psql("SELECT max(id) FROM events WHERE "
                                                   "object_id = '%s'" % c_id))), 20,
                           what="a new leader")
            down = poll(lambda: events("type = 'host.down' AND object_id = '%s'" % c_id), 25,
                        what="the silent host down")
            gap = float(psql("SELECT extract(epoch FROM d.time - e.time) FROM events d, events e "
                             "WHERE d.id = %s AND e.id = %s" % (down[0][0], elected[0][0])))
            # event times are clock_timestamp() inside their transactions,
            # the term starts at the lease transaction's now(): allow the
            # lease transaction's own duration
            self.assertGreaterEqual(gap, 6.5, "down %.2f s after the new leader took over" % gap)
        finally:
            request("PATCH", "/v1/cluster/settings", {"down_after_seconds": 30})

    def test_drain_moves_service_instances_first(self):
        tag = unique_name("dr")
        d1, d1id = add_host(tag)
        svc = create_service(tag, 2)
        got = poll(lambda: (lambda l: l if len(l) == 2 and all(x[2] == "scheduled" for x in l)
                            else None)(instances(svc["name"])), 15, what="2 scheduled on d1")
        self.assertTrue(all(x[4] == d1 for x in got))
        agent_run_scheduled([d1])
        oneoff = create_instance(tag, "never", memory_mib=16)
        poll(lambda: inst_row(oneoff["id"])[0] == "scheduled", 15, what="one-off placed")
        d2, _ = add_host(tag)
        since = last_event_id()
        st, _, h = request("POST", "/v1/hosts/%s/drain" % d1)
        self.assertEqual((st, h["state"]), (202, "draining"), h)
        deadline = time.monotonic() + 40
        while True:
            state = psql("SELECT state FROM hosts WHERE id = '%s'" % d1id)
            if state == "drained":
                break
            self.assertLess(time.monotonic(), deadline, "drain did not finish: %r"
                            % (instances(svc["name"], live_only=False),))
            agent_run_scheduled([d1, d2])
            agent_remove_deleted([d1, d2])
            time.sleep(0.2)
        live = instances(svc["name"])
        self.assertEqual(len(live), 2)
        self.assertTrue(all(x[4] == d2 for x in live), live)
        # replacements were created before the old ones were retired
        created = events("type = 'instance.created' AND name LIKE '%s-%%'" % svc["name"], since)
        retired = events("type = 'instance.deleting' AND name LIKE '%s-%%'" % svc["name"], since)
        self.assertEqual(len(created), 2, created)
        self.assertEqual(len(retired), 2, retired)
        self.assertLess(int(created[-1][0]), int(retired[0][0]))
        self.assertTrue(all("draining host %s" % d1 in e[3] for e in retired), retired)
        self.assertTrue(events("type = 'host.drained' AND name = '%s'" % d1, since))
        # one-off instances stay where they are
        self.assertEqual(inst_row(oneoff["id"])[4], d1)

    def test_service_delete_completes(self):
        tag = unique_name("del")
        h, _ = add_host(tag)
        svc = create_service(tag, 2)
        poll(lambda: sum(1 for x in instances(svc["name"]) if x[2] == "scheduled") == 2, 15,
             what="2 scheduled")
        st, _, body = request("DELETE", "/v1/services/%s" % svc["name"])
        self.assertEqual((st, body["state"]), (202, "deleting"))
        agent_set("desired_state = 'deleted' AND host_id = (SELECT id FROM hosts WHERE name = '%s')"
                  % h, "exited", 0)
        poll(lambda: request("GET", "/v1/services/%s" % svc["name"])[0] == 404, 15,
             what="service removed")
        ev = events("type = 'service.deleted' AND name = '%s'" % svc["name"])
        self.assertIn("last instance is gone", ev[0][3])

    def test_zy_sigterm_gives_the_lease_up(self):
        """A leader stopped with SIGTERM gives its lease up
        (cloud_lease_release) before it exits, and controller.released
        wakes the other replicas: a follower that tries for the lease only
        once a minute (--lease-seconds 300) leads within a second or two.
        Before, it waited for the lease to run out and then for its next
        try."""
        c = harness.cluster()
        holder = poll(lambda: psql("SELECT holder FROM leader_lease WHERE expires_at > now()"),
                      15, what="a leader")
        self.assertIn("-%d-" % c.proc.pid, holder)
        other = c.spawn_controller("rel", ["--lease-seconds", "300"])
        try:
            time.sleep(1)  # past its first try: it follows
            epoch = int(psql("SELECT epoch FROM leader_lease"))
            since = last_event_id()
            t0 = time.monotonic()
            c.stop_controller()  # SIGTERM; fails unless it exits 0
            new = poll(lambda: (lambda r: r if r and r[0][0] != holder else None)(
                rows("SELECT holder, epoch FROM leader_lease WHERE expires_at > now()")),
                20, interval=0.05, what="a takeover")
            took = time.monotonic() - t0
            self.assertIn("-%d-" % other.pid, new[0][0])
            self.assertEqual(int(new[0][1]), epoch + 1)
            self.assertLess(took, 2.5, "takeover %.1f s after SIGTERM" % took)
            rel = events("type = 'controller.released'", since)
            self.assertEqual(len(rel), 1, rel)
            self.assertEqual(rel[0][2], holder)
            self.assertIn("gave up the lease (epoch %d)" % epoch, rel[0][3])
        finally:
            if c.proc is None:
                c.start_controller()
            # The follower gives its 300 s lease up in turn: the main
            # controller leads again for the tests after this one.
            other.stop()
        poll(lambda: "-%d-" % c.proc.pid in psql("SELECT coalesce(max(holder), '') FROM "
                                                 "leader_lease WHERE expires_at > now()"),
             15, what="the main controller leading again")

    def test_zz_two_controllers_one_leader(self):
        c = harness.cluster()
        tag = unique_name("ld")
        add_host(tag)
        main_pid = c.proc.pid
        holder = poll(lambda: psql("SELECT holder FROM leader_lease WHERE expires_at > now()"), 15,
                      what="a leader")
        self.assertIn("-%d-" % main_pid, holder)
        other = c.spawn_controller("b", ["--lease-seconds", str(LEASE), "--load-page", "7"])
        try:
            since = last_event_id()
            svc = create_service(tag, 3)
            poll(lambda: sum(1 for x in instances(svc["name"]) if x[2] == "scheduled") == 3, 15,
                 what="3 scheduled")
            barrier(tag)
            actors = {e[4] for e in events("actor LIKE 'reconciler/%%'", since)}
            self.assertEqual(actors, {"reconciler/" + holder})
            self.assertEqual(psql("SELECT holder FROM leader_lease"), holder)

            # more instances than a few pages of the new leader's load
            for _ in range(25):
                create_instance(tag, "never", memory_mib=65536)
            # SIGKILL the leader: the other takes over once the lease ends
            epoch = int(psql("SELECT epoch FROM leader_lease"))
            t0 = time.monotonic()
            c.kill_controller()
            new = poll(lambda: (lambda r: r if r and r[0][0] != holder else None)(
                rows("SELECT holder, epoch FROM leader_lease WHERE expires_at > now()")),
                LEASE + 10, interval=0.05, what="a takeover")
            took = time.monotonic() - t0
            self.assertIn("-%d-" % other.pid, new[0][0])
            self.assertEqual(int(new[0][1]), epoch + 1)
            # lease end (<= LEASE after its last renewal) + one renew
            # interval (LEASE / 5) + slack for a loaded machine
            self.assertLessEqual(took, LEASE + 4, "takeover after %.1f s" % took)
            # the old leader's epoch is fenced in the database
            err = None
            try:
                psql("SELECT cloud_lease_check(%d)" % epoch)
            except harness.HarnessError as e:
                err = str(e)
            self.assertIsNotNone(err)
            self.assertIn("no longer current", err)

            # the main controller comes back as a follower: still one actor
            c.start_controller()
            since = last_event_id()
            svc2 = create_service(tag, 1)
            poll(lambda: [x for x in instances(svc2["name"]) if x[2] == "scheduled"], 15,
                 what="placed by the new leader")
            barrier(tag)
            actors = {e[4] for e in events("actor LIKE 'reconciler/%%'", since)}
            self.assertEqual(actors, {"reconciler/" + new[0][0]})
            # the new leader's mirror was loaded in pages of 7: it has every
            # instance, so it made no replacements for the service's 3
            self.assertEqual(len(instances(svc["name"])), 3)
            self.assertGreaterEqual(int(psql("SELECT count(*) FROM instances")), 28)
        finally:
            other.stop()


if __name__ == "__main__":
    unittest.main()
