"""Workload kinds: what each CPU issues (a vmalloc loop, object churn, a replayed trace, the
kernel's test_vmalloc module), registered in ``kinds``."""
