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
