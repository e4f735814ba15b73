"""The contract between the controller's SQL and its C (docs/decisions.md
"Named result columns and write structs").

Every statement of controller/store.c is prepared against a migrated
database and its parameters and result columns are compared with what its
table entry declares (store_stmts table); db.c's own check at prepare time
keeps a pool whose statement is declared wrong from ever answering, and
says which statement (store_stmts pool).
"""

import os
import subprocess

import harness

STORE_STMTS = os.environ.get("STORE_STMTS")


def setUpModule():
    harness.start()


def tearDownModule():
    harness.stop()


class StoreStatementsTest(harness.TestCase):
    def run_tool(self, mode):
        self.assertTrue(STORE_STMTS and os.access(STORE_STMTS, os.X_OK),
                        "STORE_STMTS must name the store_stmts binary")
        return subprocess.run([STORE_STMTS, mode, harness.cluster().db_url],
                              capture_output=True, text=True, timeout=120)

    def test_every_statement_matches_its_declaration(self):
        p = self.run_tool("table")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"\b[1-9]\d* statements checked, 0 mismatches")

    def test_pool_refuses_a_statement_declared_wrong(self):
        p = self.run_tool("pool")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("statement pair returns 2 columns, the controller reads 1",
                      p.stderr)
