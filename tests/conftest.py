"""Unit-test fixtures. Notebooks in tests/fixtures/ exist to test the harness itself and are
run only by tests/test_notebook_harness.py, never collected directly."""

collect_ignore_glob = ["fixtures/*"]
