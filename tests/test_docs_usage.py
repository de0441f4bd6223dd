"""docs/usage.md against the code: every option of every command, and the formats it documents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import gancontrol
import img2dist
import isic_dataset
from dcgan.turing.site import SiteOptions, build_site
from tests.conftest import REPO, make_image

USAGE = REPO / "docs" / "usage.md"
CLIS = {"isic_dataset.py": isic_dataset.cli, "gancontrol.py": gancontrol.cli, "img2dist.py": img2dist.cli}


def usage_sections() -> dict[str, str]:
    """Command name -> the text of its `### \\`name ...\\`` section in docs/usage.md."""
    text = USAGE.read_text(encoding="utf-8")
    parts = re.split(r"^(#{2,3} .*)$", text, flags=re.M)
    sections: dict[str, str] = {}
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        if match := re.match(r"### `([a-z][a-z-]*)", heading):
            # prose only: an option that appears in an example alone is not documented
            sections[match.group(1)] = re.sub(r"^```.*?^```", "", heading + body, flags=re.M | re.S)
    return sections


def mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def command_options() -> list[tuple[str, str, tuple[str, ...]]]:
    """(tool, command, its spellings) for every option of every command of the three CLIs."""
    found = []
    for tool, group in CLIS.items():
        for name, command in group.commands.items():
            for param in command.params:
                if isinstance(param, click.Option) and not param.hidden and param.name != "help":
                    found.append((tool, name, tuple(param.opts + param.secondary_opts)))
    return found


def test_every_option_of_every_command_is_in_usage_md() -> None:
    sections = usage_sections()
    options = command_options()
    assert len(options) > 80  # the walk found the commands' options (training alone has ~45)
    no_section = sorted({f"{tool} {cmd}" for tool, cmd, _ in options if cmd not in sections})
    assert no_section == [], f"docs/usage.md has no '### `COMMAND ...`' section for {no_section}"
    missing = [f"{tool} {cmd} {max(opts, key=len)}" for tool, cmd, opts in options
               if not any(mentions(sections[cmd], opt) for opt in opts)]
    assert missing == [], "docs/usage.md does not document: " + ", ".join(missing)


@pytest.mark.parametrize("section", ["training", "quality"])
def test_the_check_sees_a_missing_option(section: str) -> None:
    """The walk above would notice: a section without one of its options fails it."""
    sections = usage_sections()
    opt = next(max(o, key=len) for _, cmd, o in command_options() if cmd == section and "--quiet" not in o)
    assert mentions(sections[section], opt)
    assert not mentions(sections[section].replace(opt, "--"), opt)


def documented_answers() -> dict:
    """The example answers file of docs/usage.md (the json block of the `turing-score` section)."""
    block = re.search(r"```json\n(.*?)```", USAGE.read_text(encoding="utf-8").split("### `turing-score")[1],
                      re.S)
    assert block, "docs/usage.md: no example answers file under turing-score"
    return json.loads(block.group(1))


def test_the_documented_answers_file_is_what_the_page_writes_and_scoring_reads(tmp_path: Path) -> None:
    example = documented_answers()
    # the page's download(): the same fields, per file and per answer
    app = (REPO / "dcgan" / "turing" / "assets" / "app.js").read_text(encoding="utf-8")
    payload = re.search(r"var payload = \{(.*?)\};", app, re.S).group(1)
    assert sorted(re.findall(r"(\w+):", payload)) == sorted(example)
    pushed = re.search(r"state\.answers\.push\(\{(.*?)\}\);", app, re.S).group(1)
    assert all(sorted(re.findall(r"(\w+):", pushed)) == sorted(a) for a in example["answers"])
    # and `turing-score` accepts it on a real site once its ids are the site's
    for i in range(2):
        make_image(tmp_path / "reals" / f"r{i}.png", size=(16, 16), seed=i)
        make_image(tmp_path / "fakes" / f"f{i}.png", size=(16, 16), seed=10 + i)
    build_site(tmp_path / "reals", tmp_path / "fakes", tmp_path / "study", SiteOptions(n=2, seed=1))
    key = json.loads((tmp_path / "study" / "key.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{12}", key["site_id"]) and re.fullmatch(r"[0-9a-f]{12}", example["site_id"])
    assert all(re.fullmatch(r"[0-9a-f]{8}", x["id"]) for x in [*key["items"], *example["answers"]])
    example["site_id"] = key["site_id"]
    for answer, item in zip(example["answers"], key["items"], strict=True):
        answer["id"] = item["id"]
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(example))
    result = CliRunner().invoke(img2dist.cli, ["turing-score", str(tmp_path / "study"), str(answers)])
    assert result.exit_code == 0, result.output
    rater = json.loads((tmp_path / "study" / "score.json").read_text())["raters"][0]
    assert (rater["rater"], rater["answered"]) == ("Dr A", 2)


def test_readme_usage_and_help_agree_on_max_memory_gb() -> None:
    """What the code does (tests/test_training.py streams with a tiny --max-memory-gb): in memory up
    to the limit, decoded from disk for every batch beyond it. README, usage.md and --help say so."""
    from dcgan.options import option_help

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    training = readme.split("- **`training TRAINING_IMAGES")[1].split("\n- **")[0]
    for where, text in [("README.md", training), ("docs/usage.md", usage_sections()["training"]),
                        ("--help", "--max-memory-gb " + option_help()["max_memory_gb"])]:
        flat = " ".join(text.split())
        assert "--max-memory-gb" in flat and "from disk for every batch" in flat, where
        assert "stream from disk instead" not in flat, where
