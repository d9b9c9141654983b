"""The spinlock model against queueing theory.

With ``no_handoff`` a :class:`~sim.locks.SpinLock` is a single FIFO server: customers queue in
arrival order and the lock passes to the next waiter the moment it is released. Two classic
closed forms then apply exactly:

* open M/M/1 (Poisson arrivals of independent customers, exponential hold times), and
* the finite-source M/M/1//N "machine repairman" queue (N CPUs that think, lock, hold, unlock).

Each check runs independent replications with seeded generators, drops a warm-up, and asks
that the theoretical value lie inside the 95% Student-t interval of the replication means. The
intervals are also required to be tight, so that a wrong model could not hide in a wide one.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import simpy
from scipy import stats

from sim.engine.cpu import Cpu, IrqState
from sim.engine.locks import LockStat, SpinLock, no_handoff

CONFIDENCE = 0.95
MAX_RELATIVE_HALF_WIDTH = 0.10
"""A replicated interval wider than this fraction of its mean could not catch a wrong model."""


def t_interval(samples: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval over replication means."""
    n = len(samples)
    mean = float(np.mean(samples))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * np.std(samples, ddof=1)
                 / math.sqrt(n))
    return mean, half


def assert_covers(name: str, samples: np.ndarray, theory: float) -> None:
    mean, half = t_interval(samples)
    assert half < MAX_RELATIVE_HALF_WIDTH * abs(theory), (
        f"{name}: interval too wide to test anything: {mean:.6g} +- {half:.3g}")
    assert abs(mean - theory) <= half, (
        f"{name}: theory {theory:.6g} outside the 95% interval {mean:.6g} +- {half:.3g}")


# --- open M/M/1 -----------------------------------------------------------------------------

MM1_LAMBDA = 0.65e-3
"""Arrivals per ns (mean gap ~1538 ns)."""
MM1_MU = 1e-3
"""Services per ns (mean hold 1000 ns): rho = 0.65."""
MM1_CUSTOMERS = 10_000
MM1_WARMUP = 1_000
"""Customers discarded at the start of each replication (about 1000 mean hold times)."""
MM1_REPLICATIONS = 25
MM1_SEED = 1000


def run_mm1(rng: np.random.Generator, lam: float, mu: float, n: int
            ) -> tuple[np.ndarray, np.ndarray, SpinLock]:
    """``n`` Poisson customers, each its own process, through one FIFO lock; run to empty.

    Returns each customer's wait for the lock (in arrival order), the hold times, and the lock.
    """
    env = simpy.Environment()
    lock = SpinLock(env, "mm1", no_handoff)
    gaps = rng.exponential(1.0 / lam, n)
    holds = rng.exponential(1.0 / mu, n)
    waits = np.full(n, np.nan)

    def customer(i: int):
        who = SimpleNamespace(id=i)  # a holder of its own (lockdep's bounces read its CPU)
        arrived = env.now
        granted = lock.acquire(who)
        if granted is not None:
            yield granted
        waits[i] = env.now - arrived
        yield env.timeout(holds[i])
        lock.release(who)

    def source():
        for i in range(n):
            yield env.timeout(gaps[i])
            env.process(customer(i))

    env.process(source())
    env.run()  # no more arrivals after the n-th: runs until every customer has left
    return waits, holds, lock


@pytest.fixture(scope="module")
def mm1_replications() -> list[tuple[np.ndarray, np.ndarray, SpinLock]]:
    return [run_mm1(np.random.default_rng(MM1_SEED + rep), MM1_LAMBDA, MM1_MU, MM1_CUSTOMERS)
            for rep in range(MM1_REPLICATIONS)]


def test_mm1_mean_wait_matches_theory(mm1_replications) -> None:
    rho = MM1_LAMBDA / MM1_MU
    wq = rho / (MM1_MU - MM1_LAMBDA)  # M/M/1: Wq = rho / (mu - lambda)
    means = np.array([waits[MM1_WARMUP:].mean() for waits, _, _ in mm1_replications])
    assert_covers("M/M/1 Wq (ns)", means, wq)


def test_mm1_wait_distribution_matches_fifo_theory(mm1_replications) -> None:
    """FIFO M/M/1: P(Wq > t) = rho * exp(-(mu - lambda) t).

    The mean wait is the same for every non-preemptive order; the tail is not (a LIFO lock has
    the same mean but P(Wq > 1/(mu-lambda)) near 0.15 instead of rho/e = 0.239), so this checks
    that waiters are served in arrival order.
    """
    rho = MM1_LAMBDA / MM1_MU
    t_star = 1.0 / (MM1_MU - MM1_LAMBDA)
    busy = np.array([(waits[MM1_WARMUP:] > 0).mean() for waits, _, _ in mm1_replications])
    tail = np.array([(waits[MM1_WARMUP:] > t_star).mean() for waits, _, _ in mm1_replications])
    assert_covers("M/M/1 P(Wq > 0)", busy, rho)
    assert_covers("M/M/1 P(Wq > 1/(mu-lambda))", tail, rho * math.exp(-1.0))


def test_mm1_lock_stat_agrees_with_direct_measurement(mm1_replications) -> None:
    """lock_stat over the whole run counts exactly what the customers saw."""
    for waits, holds, lock in mm1_replications:
        s = lock.stat
        assert not np.isnan(waits).any()
        assert s.acquisitions == MM1_CUSTOMERS
        assert s.contentions == int((waits > 0).sum())
        assert s.wait_total == pytest.approx(waits.sum(), rel=1e-9)
        assert s.wait_max == pytest.approx(waits.max(), rel=1e-12)
        assert s.hold_total == pytest.approx(holds.sum(), rel=1e-9)
        assert s.hold_max == pytest.approx(holds.max(), rel=1e-12)
        assert lock.holder is None and not lock.waiters


# --- closed loop: M/M/1//N ------------------------------------------------------------------

CLOSED_N = 5
CLOSED_THINK_NS = 6000.0
"""Mean think time 1/lambda between a release and the next acquire."""
CLOSED_HOLD_NS = 1000.0
"""Mean hold 1/mu: lambda/mu = 1/6, lock utilisation 1 - p0 ~ 0.64 with 5 CPUs."""
CLOSED_WARMUP_NS = 200_000.0
"""About 30 think-hold cycles per CPU, ~130 acquisitions."""
CLOSED_WINDOW_NS = 5_000_000.0
"""About 3200 acquisitions per replication after the warm-up."""
CLOSED_REPLICATIONS = 25
CLOSED_SEED = 2000


def machine_repairman(n: int, lam: float, mu: float) -> dict[str, float]:
    """Finite-source M/M/1//N: p_k proportional to N!/(N-k)! (lambda/mu)^k."""
    r = lam / mu
    weights = np.array([math.factorial(n) / math.factorial(n - k) * r**k
                        for k in range(n + 1)])
    p = weights / weights.sum()
    busy = 1.0 - p[0]
    big_l = float(np.dot(np.arange(n + 1), p))
    x = mu * busy
    lq = big_l - busy
    return {"utilisation": busy, "throughput": x, "wq": lq / x}


def run_closed(rng: np.random.Generator, n: int, think_ns: float, hold_ns: float,
               warmup: float, window: float) -> SpinLock:
    """``n`` simulated CPUs in a think/lock/hold/unlock loop; lock_stat reset after warm-up."""
    env = simpy.Environment()
    irq = IrqState(n)
    lock = SpinLock(env, "closed", no_handoff)

    def loop(cpu: Cpu):
        while True:
            cpu.charge(rng.exponential(think_ns))
            yield from cpu.spin_lock(lock)
            cpu.charge(rng.exponential(hold_ns))
            yield from cpu.spin_unlock(lock)

    for i in range(n):
        env.process(loop(Cpu(env, i, 0, irq)))
    env.run(until=warmup)
    lock.reset_stat()
    env.run(until=warmup + window)
    return lock


@pytest.fixture(scope="module")
def closed_replications() -> list[SpinLock]:
    return [run_closed(np.random.default_rng(CLOSED_SEED + rep), CLOSED_N, CLOSED_THINK_NS,
                       CLOSED_HOLD_NS, CLOSED_WARMUP_NS, CLOSED_WINDOW_NS)
            for rep in range(CLOSED_REPLICATIONS)]


def test_theory_of_the_finite_source_queue() -> None:
    """The closed form used below, on cases worked by hand."""
    one = machine_repairman(1, 1.0, 2.0)  # one CPU never waits
    assert one["wq"] == pytest.approx(0.0, abs=1e-12)
    assert one["utilisation"] == pytest.approx(1.0 / 3.0)
    two = machine_repairman(2, 1.0, 1.0)  # p = (1, 2, 2)/5: L = 6/5, Lq = 2/5, X = 4/5
    assert two["utilisation"] == pytest.approx(0.8)
    assert two["wq"] == pytest.approx(0.5)


def test_reset_stat_starts_a_fresh_window() -> None:
    """The warm-up is really discarded: a 1 ns window after it sees (almost surely) nothing,
    while the same run's warm-up alone had plenty of acquisitions."""
    args = (CLOSED_N, CLOSED_THINK_NS, CLOSED_HOLD_NS, CLOSED_WARMUP_NS)
    tiny = run_closed(np.random.default_rng(CLOSED_SEED), *args, 1.0)
    assert vars(tiny.stat) == vars(LockStat())
    whole = run_closed(np.random.default_rng(CLOSED_SEED), *args, CLOSED_WARMUP_NS)
    assert whole.stat.acquisitions > 20 * CLOSED_N and whole.stat.contentions > 0


def test_closed_loop_mean_wait_matches_machine_repairman(closed_replications) -> None:
    theory = machine_repairman(CLOSED_N, 1.0 / CLOSED_THINK_NS, 1.0 / CLOSED_HOLD_NS)
    waits = np.array([lock.stat.wait_total / lock.stat.acquisitions
                      for lock in closed_replications])
    assert_covers("M/M/1//5 Wq (ns)", waits, theory["wq"])


def test_closed_loop_throughput_and_utilisation(closed_replications) -> None:
    theory = machine_repairman(CLOSED_N, 1.0 / CLOSED_THINK_NS, 1.0 / CLOSED_HOLD_NS)
    x = np.array([lock.stat.acquisitions / CLOSED_WINDOW_NS for lock in closed_replications])
    busy = np.array([lock.stat.hold_total / CLOSED_WINDOW_NS for lock in closed_replications])
    assert_covers("M/M/1//5 throughput (1/ns)", x, theory["throughput"])
    assert_covers("M/M/1//5 utilisation", busy, theory["utilisation"])
