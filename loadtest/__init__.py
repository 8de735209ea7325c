"""`make load`: a hostile load test of the running API, with invariants checked at the end."""
