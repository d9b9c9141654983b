"""Results: the run store, statistics, paired differences, uncertainty, tables and
``report.md``, plots, lock_stat text and the timeline export."""
