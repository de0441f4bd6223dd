"""dcgan.turing.score and `turing-score`: hand-computed raters, Fleiss' kappa, refusals, outputs, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import img2dist
from dcgan.errors import UserError
from dcgan.turing.score import (
    Answer,
    Rater,
    fleiss_kappa,
    format_report,
    load_answers,
    load_key,
    load_raters,
    rater_stats,
    score,
    score_answers,
)
from dcgan.turing.site import SiteOptions, build_site
from tests.conftest import make_image

SITE_ID = "0123456789ab"
# Ten images: four fakes (f1..f4), six reals (r1..r6).
LABELS = {"f1": "fake", "f2": "fake", "f3": "fake", "f4": "fake",
          "r1": "real", "r2": "real", "r3": "real", "r4": "real", "r5": "real", "r6": "real"}
FLIP = {"real": "fake", "fake": "real"}


def write_key(folder: Path, labels: dict[str, str] = LABELS, site_id: str = SITE_ID) -> Path:
    """A key.json as `turing` writes it (only the fields scoring reads), in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    items = [{"id": i, "label": label, "source": f"/data/{i}.png"} for i, label in labels.items()]
    (folder / "key.json").write_text(json.dumps({"format": "isic-gan-turing-key", "version": 1,
                                                 "site_id": site_id, "items": items}))
    return folder


def write_answers(path: Path, verdicts: dict[str, str], rater: str = "Dr A", site_id: str = SITE_ID,
                  confidence: dict[str, int] | None = None) -> Path:
    """An answers file as the page downloads it."""
    confidence = confidence or {}
    answers = [{"id": i, "answer": v, "confidence": confidence.get(i), "time_ms": 1000}
               for i, v in verdicts.items()]
    path.write_text(json.dumps({"format": "isic-gan-turing-answers", "version": 1, "site_id": site_id,
                                "rater": rater, "answers": answers}))
    return path


def rater(verdicts: dict[str, str], confidence: dict[str, int] | None = None, name: str = "r") -> Rater:
    confidence = confidence or {}
    return Rater(name, Path(f"{name}.json"),
                 tuple(Answer(i, v, confidence.get(i)) for i, v in verdicts.items()))


@pytest.fixture
def key(tmp_path: Path):
    return load_key(write_key(tmp_path / "study"))


# ---------------------------------------------------------------------------------------------------
# Per rater


def test_perfect_rater(key) -> None:
    s = rater_stats(rater(dict(LABELS)), key)
    assert (s["answered"], s["correct"]) == (10, 10)
    assert s["accuracy"] == s["sensitivity"] == s["specificity"] == s["balanced_accuracy"] == 1.0
    assert s["p_value"] == pytest.approx(2 * 0.5**10)  # two-sided: both tails of 1/1024
    assert s["accuracy_ci95"][1] == 1.0


def test_inverted_rater_is_as_significant_as_a_perfect_one(key) -> None:
    s = rater_stats(rater({i: FLIP[v] for i, v in LABELS.items()}), key)
    assert s["accuracy"] == s["sensitivity"] == s["specificity"] == 0.0
    assert s["p_value"] == pytest.approx(2 * 0.5**10)


def test_chance_rater_calling_everything_fake(key) -> None:
    # Five fakes and five reals, all called fake: half right, p = 1.
    labels = {f"f{i}": "fake" for i in range(5)} | {f"r{i}": "real" for i in range(5)}
    k = load_key(write_key(key.path.parent / "even", labels))
    s = rater_stats(rater(dict.fromkeys(labels, "fake")), k)
    assert (s["accuracy"], s["sensitivity"], s["specificity"], s["balanced_accuracy"]) == (0.5, 1.0, 0.0, 0.5)
    assert s["p_value"] == pytest.approx(1.0)


def test_hand_computed_rater(key) -> None:
    # Fakes: f1-f3 called fake, f4 real (3/4). Reals: r1-r4 called real, r5 r6 fake (4/6). 7/10 right.
    verdicts = {"f1": "fake", "f2": "fake", "f3": "fake", "f4": "real",
                "r1": "real", "r2": "real", "r3": "real", "r4": "real", "r5": "fake", "r6": "fake"}
    confidence = {"f1": 5, "f2": 4, "f3": 3, "f4": 2, "r1": 4, "r5": 1}  # right: 5 4 3 4, wrong: 2 1
    s = rater_stats(rater(verdicts, confidence), key)
    assert s["accuracy"] == pytest.approx(0.7)
    assert s["sensitivity"] == pytest.approx(0.75)
    assert s["specificity"] == pytest.approx(4 / 6)
    assert s["balanced_accuracy"] == pytest.approx((0.75 + 4 / 6) / 2)
    # P(X >= 7) for X ~ Bin(10, 1/2) is (120 + 45 + 10 + 1) / 1024; two-sided doubles it.
    assert s["p_value"] == pytest.approx(2 * 176 / 1024)
    assert s["confidence_right"] == pytest.approx(4.0)
    assert s["confidence_wrong"] == pytest.approx(1.5)
    assert (s["fakes_called_fake"], s["fakes"], s["reals_called_real"], s["reals"]) == (3, 4, 4, 6)


def test_no_confidence_and_no_answers(key) -> None:
    s = rater_stats(rater({"f1": "fake"}), key)
    assert s["confidence_right"] is None and s["confidence_wrong"] is None
    assert s["specificity"] is None and s["balanced_accuracy"] is None  # no real answered
    empty = rater_stats(rater({}), key)
    assert empty["accuracy"] is None and empty["p_value"] is None


# ---------------------------------------------------------------------------------------------------
# Fleiss' kappa


def test_fleiss_kappa_textbook_example() -> None:
    # Fleiss (1971) as tabulated on Wikipedia: 10 subjects, 14 raters, 5 categories; kappa = 0.210.
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=5e-5)


def test_fleiss_kappa_hand_computed_binary() -> None:
    # Three raters, four images: P_i = 1, 1, 1/3, 1/3 -> mean 2/3; categories 50/50 -> chance 1/2;
    # kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3.
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [2, 1], [1, 2]])) == pytest.approx(1 / 3)


def test_fleiss_kappa_edges() -> None:
    assert fleiss_kappa(np.array([[2, 0], [0, 2]])) == pytest.approx(1.0)  # perfect agreement
    assert fleiss_kappa(np.array([[1, 1], [1, 1]])) == pytest.approx(-1.0)  # always split
    assert fleiss_kappa(np.array([[3, 0], [3, 0]])) is None  # one category only: undefined
    assert fleiss_kappa(np.array([[1, 0], [0, 1]])) is None  # one rater
    assert fleiss_kappa(np.array([[2, 0], [0, 3]])) is None  # unequal raters per image
    assert fleiss_kappa(np.zeros((0, 2))) is None


# ---------------------------------------------------------------------------------------------------
# Across raters


def test_pooled_kappa_and_fool_rates(key) -> None:
    perfect = rater(dict(LABELS), name="perfect")
    inverted = rater({i: FLIP[v] for i, v in LABELS.items()}, name="inverted")
    # Third rater: fooled by f1 and r1 only.
    third = rater({i: FLIP[v] if i in ("f1", "r1") else v for i, v in LABELS.items()}, name="third")
    report = score([perfect, inverted, third], key)
    assert report["pooled"] == {"raters": 3, "answered": 30, "correct": 18, "accuracy": pytest.approx(0.6)}
    # Every image is split 2-1 (f1 and r1 the other way round), so each P_i = (4 + 1 - 3) / 6 = 1/3.
    # "fake" is said 2x3 (f2-f4) + 1 (f1) + 1x5 (r2-r6) + 2 (r1) = 14 times of 30: chance agreement
    # (14/30)^2 + (16/30)^2 = 452/900, kappa = (300/900 - 452/900) / (448/900) = -152/448.
    assert report["agreement"]["fleiss_kappa"] == pytest.approx(-152 / 448)
    assert report["agreement"]["images"] == 10
    fakes = report["fakes_called_real"]
    assert fakes[0]["id"] == "f1"
    assert (fakes[0]["fooled"], fakes[0]["answered"], fakes[0]["fool_rate"]) == (2, 3, pytest.approx(2 / 3))
    assert all(r["fool_rate"] == pytest.approx(1 / 3) for r in fakes[1:])
    assert report["reals_called_fake"][0]["id"] == "r1"
    text = format_report(report)
    assert "pooled accuracy 60% (18/30" in text and "f1 2/3" in text and "r1 2/3" in text


def test_accuracy_is_printed_as_the_page_shows_it() -> None:
    # The page shows Math.round(100 * 19 / 40) = 48 %; 0.47 (Python's round-half-even of 0.475) read as
    # a different score.
    from dcgan.turing.score import _percent

    assert [_percent(19, 40), _percent(1, 8), _percent(3, 8), _percent(2, 3), _percent(0, 0)] == [
        "48%", "13%", "38%", "67%", "-"]
    assert all(_percent(c, n) == f"{int(100 * c / n + 0.5)}%" for n in range(1, 60) for c in range(n + 1))


def test_kappa_uses_only_images_every_rater_answered(key) -> None:
    full = rater(dict(LABELS), name="full")
    part = rater({i: LABELS[i] for i in ("f1", "f2", "r1")}, name="part")
    report = score([full, part], key)
    assert report["agreement"] == {"fleiss_kappa": pytest.approx(1.0), "raters": 2, "images": 3}
    assert report["raters"][1]["answered"] == 3
    one = score([full], key)
    assert one["agreement"]["fleiss_kappa"] is None


# ---------------------------------------------------------------------------------------------------
# Reading and refusing


def test_refuses_answers_from_another_site(tmp_path: Path, key) -> None:
    path = write_answers(tmp_path / "other.json", dict(LABELS), site_id="ffffffffffff")
    with pytest.raises(UserError, match=r"other\.json: answers for site ffffffffffff.*site 0123456789ab"):
        load_answers(path, key)


def test_refuses_unknown_ids(tmp_path: Path, key) -> None:
    path = write_answers(tmp_path / "unknown.json", {"f1": "fake", "zz999999": "real"})
    with pytest.raises(UserError, match=r"unknown\.json: 1 answer\(s\) name images .*not in .*zz999999"):
        load_answers(path, key)


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not a readable answers file"),
    ('{"format": "something-else"}', "not an answers file"),
    (json.dumps({"format": "isic-gan-turing-answers", "site_id": SITE_ID, "answers": [
        {"id": "f1", "answer": "maybe"}]}), "answer for f1 is 'maybe'"),
    (json.dumps({"format": "isic-gan-turing-answers", "site_id": SITE_ID, "answers": [
        {"id": "f1", "answer": "fake", "confidence": 9}]}), "confidence for f1 is 9"),
    (json.dumps({"format": "isic-gan-turing-answers", "site_id": SITE_ID, "answers": [
        {"id": "f1", "answer": "fake"}, {"id": "f1", "answer": "real"}]}), "answers f1 more than once"),
])
def test_refuses_malformed_answers(tmp_path: Path, key, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=rf"bad\.json: .*{message}"):
        load_answers(path, key)


def test_key_errors_and_duplicate_files(tmp_path: Path, key) -> None:
    with pytest.raises(UserError, match=r"no such file.*written by `img2dist\.py turing`"):
        load_key(tmp_path / "nowhere")
    (tmp_path / "k.json").write_text('{"format": "x"}')
    with pytest.raises(UserError, match="not a key file"):
        load_key(tmp_path / "k.json")
    a = write_answers(tmp_path / "a.json", dict(LABELS))
    with pytest.raises(UserError, match="given twice"):
        load_raters([a, a], key)
    b = write_answers(tmp_path / "b.json", {**LABELS, "f1": "real"})  # same rater name: told apart by file
    assert [r.name for r in load_raters([a, b], key)] == ["Dr A (a.json)", "Dr A (b.json)"]


def test_the_same_answers_under_two_file_names_are_refused(tmp_path: Path, key) -> None:
    a = write_answers(tmp_path / "a.json", dict(LABELS), confidence={"f1": 3})
    copy = tmp_path / "copy-of-a.json"
    data = json.loads(a.read_text())
    copy.write_text(json.dumps({**data, "answers": data["answers"][::-1]}))  # reordered: still the same
    with pytest.raises(UserError, match=r"copy-of-a\.json: the same answers of rater 'Dr A' as .*a\.json"):
        load_raters([a, copy], key)
    other = write_answers(tmp_path / "other.json", dict(LABELS), rater="Dr B")  # another rater, same answers
    assert [r.name for r in load_raters([a, other], key)] == ["Dr A", "Dr B"]


def test_over_deep_json_is_one_error_line(tmp_path: Path) -> None:
    out = write_key(tmp_path / "study")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000)
    result = CliRunner().invoke(img2dist.cli, ["turing-score", str(out), str(deep)])
    assert result.exit_code == 1
    assert result.output == f"Error: {deep}: not a readable answers file (nested too deeply)\n"


def test_control_characters_in_rater_names_are_not_printed(tmp_path: Path) -> None:
    out = write_key(tmp_path / "study")
    evil = write_answers(tmp_path / "evil.json", dict(LABELS), rater="\x1b]0;owned\x07Dr\x1b[2J \u202eEvil\r")
    result = CliRunner().invoke(img2dist.cli, ["turing-score", str(out), str(evil)])
    assert result.exit_code == 0, result.output
    assert "Dr]0;owned" not in result.output  # the ESC is gone, so is BEL: nothing reaches the terminal
    assert not any(ch in result.output for ch in "\x1b\x07\r\u202e")
    assert "]0;ownedDr[2J Evil" in result.output
    saved = json.loads((out / "score.json").read_text())
    assert saved["raters"][0]["rater"] == "]0;ownedDr[2J Evil"


# ---------------------------------------------------------------------------------------------------
# End to end on a built site, and the CLI


def built_site(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A real 8-image site (4 fakes, 4 reals); returns OUTPUT_DIR and its key."""
    for i in range(5):
        make_image(tmp_path / "reals" / f"r{i}.jpg", size=(48, 48), seed=i)
        make_image(tmp_path / "fakes" / f"f{i}.png", size=(32, 32), seed=100 + i)
    out = tmp_path / "study"
    build_site(tmp_path / "reals", tmp_path / "fakes", out, SiteOptions(n=8, seed=3))
    return out, json.loads((out / "key.json").read_text())


def test_score_answers_writes_json_and_grid(tmp_path: Path) -> None:
    out, key = built_site(tmp_path)
    truth = {item["id"]: item["label"] for item in key["items"]}
    fakes = [i for i, v in truth.items() if v == "fake"]
    fooled_by = {fakes[0]: 2, fakes[1]: 1}
    files = []
    for r in range(2):
        verdicts = {i: "real" if fooled_by.get(i, 0) > r else v for i, v in truth.items()}
        files.append(write_answers(tmp_path / f"rater{r}.json", verdicts, rater=f"R{r}",
                                   site_id=key["site_id"]))
    result = score_answers(out, files)
    assert result.json_path == out / "score.json" and result.grid_path == out / "convincing_fakes.png"
    saved = json.loads(result.json_path.read_text())
    assert saved["pooled"]["correct"] == 16 - 3
    assert [r["id"] for r in saved["fakes_called_real"][:2]] == fakes[:2]
    assert saved["fakes_called_real"][0]["source"].endswith(".png")
    # Only the two fakes that fooled someone are drawn, not the two that fooled nobody: two
    # 32 px tiles shown at 160 px, side by side, 8 px apart.
    assert result.grid_count == 2 and result.grid_note is None
    assert saved["outputs"]["grid"] == str(result.grid_path)
    grid = Image.open(result.grid_path)
    assert grid.mode == "RGB" and grid.width == 2 * (160 + 8) + 8


def test_no_grid_when_no_fake_fooled_anyone(tmp_path: Path) -> None:
    out, key = built_site(tmp_path)
    truth = {item["id"]: item["label"] for item in key["items"]}
    reals = [i for i, v in truth.items() if v == "real"]
    # A rater who calls one real fake but catches every fake: no fake is convincing.
    verdicts = {**truth, reals[0]: "fake"}
    answers = write_answers(tmp_path / "sharp.json", verdicts, rater="Dr Sharp", site_id=key["site_id"])
    (out / "convincing_fakes.png").write_bytes(b"a grid from an earlier scoring")
    result = score_answers(out, [answers])
    assert result.grid_path is None and result.grid_count == 0
    assert result.grid_note == "no convincing_fakes.png written: no fake fooled any rater"
    assert not (out / "convincing_fakes.png").exists()  # a stale grid would contradict score.json
    saved = json.loads(result.json_path.read_text())
    assert saved["outputs"]["grid"] is None and saved["outputs"]["grid_note"] == result.grid_note
    assert [r["id"] for r in saved["reals_called_fake"] if r["fooled"]] == [reals[0]]

    result = CliRunner().invoke(img2dist.cli, ["turing-score", str(out), str(answers)])
    assert result.exit_code == 0, result.output
    assert "note: no convincing_fakes.png written: no fake fooled any rater" in result.output
    assert "fakes most often called real: none" in result.output


def test_no_grid_when_the_site_folder_is_gone(tmp_path: Path) -> None:
    out, key = built_site(tmp_path)
    truth = {item["id"]: item["label"] for item in key["items"]}
    verdicts = {i: "real" for i in truth}
    answers = write_answers(tmp_path / "a.json", verdicts, site_id=key["site_id"])
    shutil.rmtree(out / "site")
    result = score_answers(out, [answers])
    assert result.grid_path is None and result.grid_note is not None and "is gone" in result.grid_note


def test_cli_turing_score(tmp_path: Path) -> None:
    out, key = built_site(tmp_path)
    truth = {item["id"]: item["label"] for item in key["items"]}
    good = write_answers(tmp_path / "good.json", truth, rater="Dr Good", site_id=key["site_id"])
    half = write_answers(tmp_path / "half.json", dict(list(truth.items())[:4]), rater="Dr Half",
                         site_id=key["site_id"])
    group = img2dist.cli  # the real CLI: a command missing from it must fail here
    runner = CliRunner()
    result = runner.invoke(group, ["turing-score", str(out), str(good), str(half),
                                   "--report-dir", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "Dr Good" in result.output and "1.00" in result.output and "Fleiss' kappa" in result.output
    assert "Dr Half answered 4 of 8 images" in result.output
    assert (tmp_path / "report" / "score.json").is_file()

    other = write_answers(tmp_path / "other.json", truth, site_id="aaaaaaaaaaaa")
    result = runner.invoke(group, ["turing-score", str(out), str(other)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "other.json: answers for site aaaaaaaaaaaa" in result.output
    assert len(result.output.strip().splitlines()) == 1
