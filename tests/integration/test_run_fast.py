"""Rows carried with events (issue 4, run to running).

The controller's event hub reads each new instance event together with its
instance's host, its id (NULL: gone) and the reconciler's row of it
(controller/store.c ST_EVENT_HUB): the read cache removes a gone instance at
once (and re-reads the others), the gateway takes the host from it and the
reconciler (between passes) its mirror row. These tests change instances
behind the controller's back, as another controller or the reconciler would
(SQL writes with an event each), and check what the API shows:

- two changes of one instance committed together (two events in one read,
  only the last carrying the reconciler's row) show the later state;
- an instance whose row is deleted disappears (404, not in the list);
- a row older than what the cache holds does not replace it (version
  guard);
- with the reconciler on, an instance created through the API is placed
  (the reconciler decided from the row carried with instance.created).
"""

import unittest

import harness
from harness import poll, request, unique_name

HOST = {}


def setUpModule():
    c = harness.start(reconcile=True)
    c.add_image("hello", "latest")
    name = unique_name("rf-host")
    hid = c.add_host(name, vcpus=64, memory_mib=65536)
    # Registered, its heartbeat fresh for the module's length.
    harness.psql("UPDATE hosts SET session_epoch = 1, last_seen = now() + interval '1 hour', "
                 "version = version + 1 WHERE id = '%s'; SELECT cloud_event('host.registered', "
                 "'host', '%s', '%s', 'host %s registered (test)', 'agent');"
                 % (hid, hid, name, name))
    HOST["id"] = hid


def tearDownModule():
    harness.stop()


def create(name, extra=None):
    body = {"image": "hello:latest", "name": name,
            "resources": {"vcpus": 1, "memory_mib": 256, "disk_gib": 0}}
    body.update(extra or {})
    st, _, inst = request("POST", "/v1/instances", body)
    if st != 201:
        raise AssertionError("POST /v1/instances: %d %r" % (st, inst))
    return inst


def insert_exited(name):
    """An exited, stopped instance written behind the controller's back (the
    reconciler leaves it alone), announced with instance.created."""
    iid = harness.hex_id(8)
    harness.psql("BEGIN; INSERT INTO instances (id, name, image, vcpus, memory_mib, disk_gib, "
                 "state, desired_state, exit_code, finished_at) VALUES ('%s', '%s', "
                 "'hello:latest', 1, 256, 0, 'exited', 'stopped', 0, now()); "
                 "INSERT INTO events (type, object, object_id, name, message, actor) "
                 "VALUES ('instance.created', 'instance', '%s', '%s', 'made (test)', 'test'); "
                 "COMMIT;" % (iid, name, iid, name))
    poll(lambda: get(iid)[0] == 200, 10, 0.02, "the inserted instance in the API")
    return iid


def get(ref):
    st, _, body = request("GET", "/v1/instances/" + ref)
    return st, body


class RowsWithEvents(harness.TestCase):
    def test_two_changes_in_one_transaction_show_the_later(self):
        iid = insert_exited(unique_name("rf-two"))
        harness.psql(
            "BEGIN; "
            "UPDATE instances SET name = '%(n1)s', version = version + 1 WHERE id = '%(id)s'; "
            "INSERT INTO events (type, object, object_id, name, message, actor) "
            "VALUES ('instance.renamed', 'instance', '%(id)s', '%(n1)s', 'one', 'test'); "
            "UPDATE instances SET name = '%(n2)s', version = version + 1 WHERE id = '%(id)s'; "
            "INSERT INTO events (type, object, object_id, name, message, actor) "
            "VALUES ('instance.renamed', 'instance', '%(id)s', '%(n2)s', 'two', 'test'); "
            "COMMIT;" % {"id": iid, "n1": iid[:8] + "-one", "n2": iid[:8] + "-two"})
        poll(lambda: get(iid)[1].get("name") == iid[:8] + "-two", 10, 0.02,
             "the later name in the API")
        st, _ = get(iid[:8] + "-two")
        self.assertEqual(st, 200)
        st, _ = get(iid[:8] + "-one")
        self.assertEqual(st, 404)

    def test_deleted_row_disappears(self):
        iid = insert_exited(unique_name("rf-del"))
        self.assertEqual(get(iid)[0], 200)
        harness.psql(
            "BEGIN; DELETE FROM instances WHERE id = '%(id)s'; "
            "INSERT INTO events (type, object, object_id, name, message, actor) "
            "VALUES ('instance.deleted', 'instance', '%(id)s', 'x', 'gone', 'test'); COMMIT;"
            % {"id": iid})
        poll(lambda: get(iid)[0] == 404, 10, 0.02, "the deleted instance to go")
        st, _, body = request("GET", "/v1/instances?limit=1000")
        self.assertEqual(st, 200)
        self.assertNotIn(iid, [i["id"] for i in body["items"]])

    def test_older_row_does_not_go_back(self):
        iid = insert_exited(unique_name("rf-ver"))
        # The version goes back (which no writer does): the cache keeps what
        # it holds rather than apply an older row.
        v = int(harness.psql("SELECT version FROM instances WHERE id = '%s'" % iid).strip())
        harness.psql(
            "BEGIN; UPDATE instances SET name = '%(n)s', version = %(v)d + 5 WHERE id = '%(id)s'; "
            "INSERT INTO events (type, object, object_id, name, message, actor) "
            "VALUES ('instance.renamed', 'instance', '%(id)s', '%(n)s', 'new', 'test'); COMMIT;"
            % {"id": iid, "n": iid[:8] + "-new", "v": v})
        poll(lambda: get(iid)[1].get("name") == iid[:8] + "-new", 10, 0.02, "the new name")
        harness.psql(
            "BEGIN; UPDATE instances SET name = '%(n)s', version = %(v)d + 1 WHERE id = '%(id)s'; "
            "INSERT INTO events (type, object, object_id, name, message, actor) "
            "VALUES ('instance.renamed', 'instance', '%(id)s', '%(n)s', 'old', 'test'); COMMIT;"
            % {"id": iid, "n": iid[:8] + "-old", "v": v})
        # A later change with a higher version shows: the events were read.
        harness.psql(
            "BEGIN; INSERT INTO events (type, object, object_id, name, message, actor) "
            "VALUES ('instance.noted', 'instance', '%(id)s', 'x', 'marker', 'test'); COMMIT;"
            % {"id": iid})
        insert_exited(unique_name("rf-marker"))
        self.assertEqual(get(iid)[1].get("name"), iid[:8] + "-new")

    def test_created_instance_is_placed(self):
        inst = create(unique_name("rf-place"))
        iid = inst["id"]
        poll(lambda: get(iid)[1].get("host") is not None, 15, 0.02,
             "the reconciler to place the instance")
        st, body = get(iid)
        self.assertEqual(st, 200)
        self.assertEqual(body["state"], "scheduled")


if __name__ == "__main__":
    unittest.main()
