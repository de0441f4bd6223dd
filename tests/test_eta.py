"""The training ETA: the steps at their recent rate, plus the sample grids, checkpoints and
evaluations still to come, each at its own measured cost; a shared CPU's bursts of load do not
make it jump. And a run says its measured step time within its first seconds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from dcgan.training.runlog import StepClock
from gancontrol import cli
from tests.conftest import make_image


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_steps(clock: StepClock, fake: FakeClock, seconds: list[float], cost: dict[str, float] | None = None,
              start: int = 0) -> list[float | None]:
    """Steps of `seconds` each, and after each the periodic work its `every` asks for, of `cost`;
    returns the ETA after each step (taken, as in the loop, before that step's periodic work)."""
    etas = []
    for step, s in enumerate(seconds, start=start + 1):
        with clock.step():
            fake.now += s
        etas.append(clock.eta(step))
        for kind, every in clock.every.items():
            if step % every == 0 or step == clock.total:
                with clock.periodic(kind):
                    fake.now += (cost or {}).get(kind, 0.0)
    return etas


def test_periodic_work_is_counted_as_it_will_come() -> None:
    fake = FakeClock()
    clock = StepClock(105, {"grid": 10, "checkpoint": 50}, clock=fake)
    etas = run_steps(clock, fake, [5.0] + [1.0] * 59, {"grid": 3.0, "checkpoint": 8.0})
    assert etas[0] is None  # the first step (warm-up, 5 s here) is not timed
    # Before the first checkpoint only the grids are known: at step 20, 85 steps and 10 grids to come
    # (20, 30, ..., 100 and the last step's, 105).
    assert etas[19] == pytest.approx(85 * 1.0 + 10 * 3.0)
    # From step 50 on the checkpoints too: at step 60, 45 steps, 6 grids (60 ... 100, 105) and 2
    # checkpoints (100, 105).
    assert etas[59] == pytest.approx(45 * 1.0 + 6 * 3.0 + 2 * 8.0)
    assert clock.eta_text(60) == "ETA 01:19"
    assert clock.step_seconds == pytest.approx(64.0)  # the summary counts every step, warm-up included
    # The ETA is what the run then takes: the rest of the run, timed alike (and step 60's grid, drawn
    # already), lasts exactly that long.
    before = fake.now
    run_steps(clock, fake, [1.0] * 45, {"grid": 3.0, "checkpoint": 8.0}, start=60)
    assert 3.0 + fake.now - before == pytest.approx(etas[59])


def test_how_often_each_kind_still_comes() -> None:
    clock = StepClock(205, {"grid": 50})
    # Just after step s, its own grid not yet drawn; the last step always gets one.
    assert [clock.still_to_come("grid", s) for s in (1, 49, 50, 51, 200, 201, 205)] == [5, 5, 5, 4, 2, 1, 1]
    assert StepClock(200, {"grid": 50}).still_to_come("grid", 200) == 1


def test_periodic_costs_are_smoothed() -> None:
    fake = FakeClock()
    clock = StepClock(1000, {"grid": 10}, clock=fake)
    # A grid with a loss-curve redraw (4 s) every third time, 1 s otherwise.
    costs = [4.0 if i % 3 == 0 else 1.0 for i in range(30)]
    seen = []
    for cost in costs:
        with clock.periodic("grid"):
            fake.now += cost
        seen.append(clock.periodic_seconds["grid"])
    assert seen[:3] == pytest.approx([4.0, 2.5, 2.0])  # the mean of the first ones
    assert all(1.4 < s < 2.9 for s in seen[3:])  # then near the mean of 2 s, never one grid's cost


def test_a_burst_of_load_does_not_make_the_eta_jump() -> None:
    fake = FakeClock()
    clock = StepClock(5000, {}, clock=fake)
    run_steps(clock, fake, [0.33] * 601)  # a quiet machine, 200 s
    assert clock.sec_per_step == pytest.approx(0.33)
    # Other jobs for 11 s: five steps of 2.25 s. A window of 50 steps (before) took the estimate to
    # 0.51 s (+55%); as the rate of the last three minutes they count for their 11 s: +6%.
    run_steps(clock, fake, [2.25] * 5, start=601)
    assert clock.sec_per_step == pytest.approx(0.349, abs=0.001)
    run_steps(clock, fake, [0.33] * 600, start=606)  # gone once out of the window
    assert clock.sec_per_step == pytest.approx(0.33)
    # Load that stays fills the window: after 3 minutes the estimate is its step time.
    run_steps(clock, fake, [2.25] * 40, start=1206)
    assert 0.5 < clock.sec_per_step < 0.6  # 90 s: half the window
    run_steps(clock, fake, [2.25] * 40, start=1246)
    assert clock.sec_per_step == pytest.approx(2.25)


def alternating(steps: int, phase: float) -> list[float]:
    """Step times of a CPU shared with other jobs: `phase` seconds at 0.33 s per step, `phase` at
    2.25 s (a loaded machine), and so on."""
    seconds, now = [], 0.0
    while len(seconds) < steps:
        seconds.append(0.33 if int(now // phase) % 2 == 0 else 2.25)
        now += seconds[-1]
    return seconds


@pytest.mark.parametrize(("phase", "low", "high"), [(10, -0.06, 0.02), (20, -0.08, 0.08), (40, -0.18, 0.07)])
def test_a_shared_cpu_gives_a_steady_end_time(phase: float, low: float, high: float) -> None:
    """Once the first checkpoint is timed and two minutes have passed, the end the ETA foresees
    (the time so far + the ETA) stays near the run's real end: a 50-step window, without the
    periodic work, swung from -24% to +13% with phases of 20 s, and -35% to +35% with 40 s."""
    fake = FakeClock()
    clock = StepClock(1000, {"grid": 50, "checkpoint": 100}, clock=fake)
    ends = []
    for step, seconds in enumerate(alternating(1000, phase), start=1):
        eta = run_steps(clock, fake, [seconds], {"grid": 2.0, "checkpoint": 3.0}, start=step - 1)[0]
        done = fake.now - (step % 50 == 0) * 2.0 - (step % 100 == 0) * 3.0  # before this step's work
        if step > 100 and done > 120:
            ends.append(done + eta)
    assert low < min(ends) / fake.now - 1 and max(ends) / fake.now - 1 < high


def test_no_estimate_before_a_step_was_timed() -> None:
    assert StepClock(10).eta(0) is None and StepClock(10).eta_text(0) == "ETA ?"


def test_the_same_clock_times_log_intervals_and_the_summary() -> None:
    fake = FakeClock()
    clock = StepClock(1000, {"grid": 10}, clock=fake)
    run_steps(clock, fake, [1.0] * 20, {"grid": 4.0})  # 20 s of steps, 2 x 4 s of periodic work
    assert clock.lap() == pytest.approx(28.0)  # a log interval: steps and periodic work alike
    fake.now += 3.0
    assert clock.lap() == pytest.approx(3.0)  # from the previous lap
    assert clock.now() == fake.now == pytest.approx(31.0)
    assert clock.step_seconds == pytest.approx(20.0) and clock.other_seconds() == pytest.approx(11.0)


def test_the_step_time_is_reported_once_after_a_few_steps() -> None:
    fake = FakeClock()
    clock = StepClock(100, {}, clock=fake)
    reports = []
    for _ in range(10):
        run_steps(clock, fake, [0.3])
        reports.append(clock.first_rate())
    # Warm-up, then three timed steps (0.9 s): reported at the fourth step, never again.
    assert reports == [None, None, None, pytest.approx(0.3)] + [None] * 6
    slow, fake = None, FakeClock()
    clock = StepClock(100, {}, clock=fake)
    run_steps(clock, fake, [40.0, 2.5])  # slow steps: after the first timed one already
    slow = clock.first_rate()
    assert slow == pytest.approx(2.5)


def test_a_run_prints_its_step_time_in_its_first_steps(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(4):
        make_image(data / f"i{i}.png", (16, 16), seed=i)
    out = tmp_path / "run"
    args = ["training", data, 6, 4, out, "--z-dim", "8", "--g-channels", "4", "--d-channels", "4",
            "--grid-size", "4", "--log-every", "1", "--preset", "classic"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if line.startswith("measured ")]
    assert len(said) == 1, result.output
    match = re.fullmatch(r"measured (\d[\d.e-]*) s per step of 4 images at 16 px on cpu: with its sample "
                         r"grids and checkpoints the run ends in about (\d\d):(\d\d) \(longer while other "
                         r"jobs share this machine\)", said[0])
    assert match and float(match[1]) > 0, said[0]
    log = (out / "log.txt").read_text().splitlines()
    at = next(i for i, line in enumerate(log) if "INFO measured " in line)
    logged_steps = [line for line in log[:at] if re.search(r"INFO step \d+: loss_d", line)]
    assert len(logged_steps) <= 4  # after at most 4 steps (1 warm-up + 3 timed, or 2 s of them)
    # ... and the quiet run keeps it to its log
    quiet = CliRunner().invoke(cli, [str(a) for a in [*args[:4], tmp_path / "q", *args[5:], "--quiet"]])
    assert quiet.exit_code == 0 and "measured" not in quiet.output
    assert "INFO measured " in (tmp_path / "q" / "log.txt").read_text()
