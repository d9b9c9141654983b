"""Built-in catalogs (machine profiles, workloads, experiments), installed with the package."""
