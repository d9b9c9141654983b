"""The simulation engine: the machine, CPUs (costed execution, stolen time), locks and
lock_stat, metrics, stop conditions and the per-run tracer; ``fastpath`` holds every use of
SimPy internals."""
