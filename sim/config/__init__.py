"""Configuration: YAML loading with line numbers, the schema of every file, units, catalogs,
and the parsers of input files that validation needs (traces, test_vmalloc's parameters).
The bottom layer: it imports nothing else of the package."""
