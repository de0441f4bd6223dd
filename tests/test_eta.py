"""The training ETA counts training steps only: periodic grids, plots and checkpoints never make it jump."""

from __future__ import annotations

import pytest

from dcgan.training.runlog import StepClock


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_steps(clock: StepClock, fake: FakeClock, seconds: list[float], periodic: float = 0.0,
              every: int = 10, total: int = 1000) -> list[float | None]:
    etas = []
    for i, s in enumerate(seconds, start=1):
        with clock.step():
            fake.now += s
        if i % every == 0:
            fake.now += periodic  # a sample grid, a loss-curve redraw, a checkpoint: outside the step
        etas.append(clock.eta(total - i))
    return etas


def test_periodic_work_does_not_move_the_eta() -> None:
    fake = FakeClock()
    clock = StepClock(clock=fake)
    etas = run_steps(clock, fake, [5.0] + [1.0] * 99, periodic=30.0)
    assert etas[0] is None  # the first step (warm-up, 5 s here) is not timed
    assert etas[1:] == [pytest.approx(1000 - i) for i in range(2, 101)]  # exactly 1 s per step left
    assert clock.eta_text(900) == "ETA 15:00" and clock.eta_text(3700) == "ETA 1:01:40"
    assert clock.step_seconds == pytest.approx(104.0)  # the summary counts every step, warm-up included


def test_a_slower_phase_moves_the_eta_gradually() -> None:
    fake = FakeClock()
    clock = StepClock(smoothing=0.02, clock=fake)
    etas = run_steps(clock, fake, [1.0] * 201 + [2.0] * 300, total=1000)
    after_one = etas[201] / (1000 - 202)  # seconds per step the estimate assumes after one slow step
    assert after_one == pytest.approx(1.02)
    assert etas[-1] / (1000 - 501) == pytest.approx(2.0, rel=0.01)  # ~1/smoothing steps later: caught up


def test_no_estimate_before_a_step_was_timed() -> None:
    assert StepClock().eta(10) is None and StepClock().eta_text(10) == "ETA ?"


def test_the_same_clock_times_log_intervals_and_the_summary() -> None:
    fake = FakeClock()
    clock = StepClock(clock=fake)
    run_steps(clock, fake, [1.0] * 20, periodic=4.0)  # 20 s of steps, 2 x 4 s of periodic work
    assert clock.lap() == pytest.approx(28.0)  # a log interval: steps and periodic work alike
    fake.now += 3.0
    assert clock.lap() == pytest.approx(3.0)  # from the previous lap
    assert clock.now() == fake.now == pytest.approx(31.0)
    assert clock.step_seconds == pytest.approx(20.0) and clock.other_seconds() == pytest.approx(11.0)
