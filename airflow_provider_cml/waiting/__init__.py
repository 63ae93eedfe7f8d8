"""The waiting core: workload kinds, the waiting rule, and a whole wait as one plan of requests."""
