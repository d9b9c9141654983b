"""``LeanProcess`` and ``skip`` (sim/engine/cpu.py) behave exactly as a ``simpy.Process`` does: the
same values, failures and errors at the same times, and the same events in the same order
(the event ids used up included), whether or not a CPU skips a sleep."""

from __future__ import annotations

from collections.abc import Callable, Generator

import simpy

from sim.engine.cpu import Cpu, IrqState
from sim.engine.fastpath import LeanProcess, skip

Trace = list[tuple[float, str, object]]
Scenario = Callable[[simpy.Environment, Callable, Trace], None]


def replay(scenario: Scenario, kind: type[simpy.Process]) -> tuple[Trace, int]:
    """Run ``scenario`` with its processes made as ``kind``: what it traced, and the next
    event id (how many events were made)."""
    env = simpy.Environment()
    trace: Trace = []
    scenario(env, lambda gen: kind(env, gen), trace)
    try:
        env.run()
    except Exception as error:  # noqa: BLE001 (an uncaught failure ends the run: compare it)
        trace.append((env.now, "crash", repr(error)))
    return trace, next(env._eid)


def same_as_simpy(scenario: Scenario) -> Trace:
    trace, eid = replay(scenario, LeanProcess)
    assert (trace, eid) == replay(scenario, simpy.Process)
    return trace


def test_values_failures_and_waiting_on_processes():
    def scenario(env, start, trace):
        def child(n):
            yield env.timeout(n)
            if n == 3:
                raise ValueError("three")
            return n * 10

        def parent():
            for n in (1, 2, 3):
                try:
                    trace.append((env.now, "child", (yield start(child(n)))))
                except ValueError as error:
                    trace.append((env.now, "failed", str(error)))
            done = env.event().succeed("early")
            yield env.timeout(1)
            trace.append((env.now, "processed", (yield done)))  # resumes at once
            failing = env.event()
            failing.fail(KeyError("k"))
            try:
                yield failing
            except KeyError as error:
                trace.append((env.now, "thrown", repr(error)))
            return "parent"

        main = start(parent())
        main.callbacks.append(lambda e: trace.append((env.now, "main", e.value)))

    assert same_as_simpy(scenario)[-1] == (7, "main", "parent")


def test_uncaught_failure_and_invalid_yield():
    def failing(env, start, trace):
        def boom():
            yield env.timeout(2)
            raise RuntimeError("boom")
        start(boom())

    def invalid(env, start, trace):
        def bad():
            yield env.timeout(1)
            yield 42
        start(bad())

    assert same_as_simpy(failing)[-1] == (2, "crash", "RuntimeError('boom')")
    assert "Invalid yield value" in same_as_simpy(invalid)[-1][2]


def test_interrupt_and_conditions():
    def scenario(env, start, trace):
        def sleeper():
            try:
                yield env.timeout(10)
            except simpy.Interrupt as interrupt:
                trace.append((env.now, "interrupted", interrupt.cause))
            yield env.timeout(1)

        def interrupter(victim):
            yield env.timeout(3)
            victim.interrupt("wake")

        victim = start(sleeper())
        start(interrupter(victim))
        env.all_of([victim]).callbacks.append(lambda e: trace.append((env.now, "all", None)))

    assert same_as_simpy(scenario) == [(3, "interrupted", "wake"), (4, "all", None)]


def cpu_work(env: simpy.Environment, cpu: Cpu, steps: list[float], trace: Trace,
             name: str) -> Generator[simpy.Event, None, None]:
    """A CPU charging and settling ``steps`` (ns), tracing when each settle ends."""
    for ns in steps:
        cpu.charge(ns)
        yield from cpu.settle()
        trace.append((env.now, name, ns))


def test_skipped_sleeps_keep_the_order_of_events():
    """CPUs whose sleeps are next in the queue, tied with other events, or follow another
    callback of the event that resumed them: the same trace and event ids."""
    def scenario(env, start, trace):
        irq = IrqState(3)
        cpus = [Cpu(env, i, 0, irq) for i in range(3)]
        start(cpu_work(env, cpus[0], [5.0, 5.0, 0.1, 7.0, 3.0], trace, "a"))
        start(cpu_work(env, cpus[1], [10.0, 0.1, 2.0, 0.1], trace, "b"))

        shared = env.timeout(4)

        def before_another_callback():
            yield shared  # resumed before the callback below: no skip past what it schedules
            yield from cpu_work(env, cpus[2], [0.5, 1.0], trace, "c")

        def add_callback():
            yield env.timeout(1)
            shared.callbacks.append(lambda e: env.timeout(0).callbacks.append(
                lambda e: trace.append((env.now, "other", None))))

        start(before_another_callback())
        start(add_callback())

    trace = same_as_simpy(scenario)
    assert len(trace) == 12 and trace.index((4, "other", None)) < trace.index((4.5, "c", 0.5))


def test_skip_advances_the_clock_only_when_nothing_comes_first():
    env = simpy.Environment()
    seen = []

    def lone():
        yield env.timeout(1)
        seen.append(skip(env, 2.0))  # nothing queued: the clock moves, an id is used up
        seen.append(env.now)
        env.timeout(1)
        seen.append(skip(env, 2.0))  # an event due before: sleep instead

    LeanProcess(env, lone())
    env.run()
    assert seen == [True, 3.0, False]
    assert next(env._eid) == 5  # Initialize, timeout, skipped, timeout, process end


def test_skip_needs_a_lean_process():
    env = simpy.Environment()
    seen = []

    def plain():
        yield env.timeout(1)
        seen.append(skip(env, 2.0))

    simpy.Process(env, plain())
    env.run()
    assert seen == [False]
