"""Group commit: many concurrent writes, each with its own answer.

Concurrent one-off creates travel together (cloud_instance_create_many when
the batch holds only such creates); a batch with a failing item falls back
to item-by-item answers, so one duplicate name fails alone.
"""

import harness
from harness import request, unique_name

IMAGE = "hello:latest"


setUpModule, tearDownModule = harness.module_fixture()


class WriterTests(harness.TestCase):
    def test_concurrent_creates_all_land(self):
        for _ in range(3):
            answers = harness.post_at_once("/v1/instances", [{"image": IMAGE} for _ in range(24)])
            ids = []
            for st, _, body in answers:
                self.assertEqual(st, 201, body)
                ids.append(body["id"])
            self.assertEqual(len(set(ids)), 24)
            for i in ids:
                st, _, got = request("GET", "/v1/instances/%s" % i)
                self.assertEqual((st, got["state"]), (200, "pending"))

    def test_one_duplicate_fails_alone(self):
        for _ in range(3):
            dup = unique_name("dup")
            bodies = [{"image": IMAGE} for _ in range(20)]
            bodies[3] = {"image": IMAGE, "name": dup}
            bodies[11] = {"image": IMAGE, "name": dup}
            answers = harness.post_at_once("/v1/instances", bodies)
            statuses = sorted(st for st, _, _ in answers)
            self.assertEqual(statuses, [201] * 19 + [409], answers)
            st, _, got = request("GET", "/v1/instances/%s" % dup)
            self.assertEqual((st, got["name"]), (200, dup))

    def test_a_bad_image_fails_alone(self):
        bodies = [{"image": IMAGE} for _ in range(12)]
        bodies[5] = {"image": "nosuch:latest"}
        answers = harness.post_at_once("/v1/instances", bodies)
        for k, (st, _, body) in enumerate(answers):
            if k == 5:
                self.assertEqual(st, 422, body)
                self.assertEqual(body["error"]["field"], "image")
            else:
                self.assertEqual(st, 201, body)
        st, _, m = request("GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertIn("cloud_write_batches_total", m)

    def test_refused_writes_audited_in_batches_with_creates(self):
        # Refused requests (422 in the API, before the database) and a
        # duplicate (409 from the database) share batches with creates: each
        # answer is its own, and each refused request has its audit event.
        since = int(harness.psql("SELECT coalesce(max(id), 0) FROM events"))
        dup = unique_name("adup")
        bodies = []
        for k in range(30):
            if k % 3 == 0:
                bodies.append({"image": IMAGE, "resources": {"vcpus": 1, "memory_mib": 1}})
            else:
                bodies.append({"image": IMAGE})
        bodies[4] = {"image": IMAGE, "name": dup}
        bodies[5] = {"image": IMAGE, "name": dup}
        answers = harness.post_at_once("/v1/instances", bodies)
        for k, (st, _, body) in enumerate(answers):
            if k % 3 == 0:
                self.assertEqual(st, 422, body)
                self.assertEqual(body["error"]["field"], "resources.memory_mib")
            elif k not in (4, 5):
                self.assertEqual(st, 201, body)
        self.assertEqual(sorted(answers[k][0] for k in (4, 5)), [201, 409])
        audits = harness.psql(
            "SELECT type || ' ' || message FROM events WHERE id > %d AND object = 'api' "
            "ORDER BY id" % since).splitlines()
        refused = [a for a in audits if "-> 422" in a]
        self.assertEqual(len(refused), 10, audits)
        for a in refused:
            self.assertRegex(a, r"^api\.failed .*: POST /v1/instances -> 422 ")
        self.assertEqual(len([a for a in audits if "-> 409" in a]), 1, audits)
