"""Personality files: the bundled ones load; bad ones are refused, naming file and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.fake_openai import bot_yaml
from support.server import ROOT, Server

from app.bots.personality import (
    BUNDLED_DIR,
    BotConfigError,
    load_personalities,
    parse_personality,
)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_personalities_load_with_distinct_names_and_voices() -> None:
    bots = load_personalities()
    assert len(bots) >= 3
    assert [b.name for b in bots][:3] == ["sol", "pip", "noor"]  # by `order`
    assert len({b.name for b in bots}) == len(bots)
    assert len({b.voice.honesty for b in bots}) == len(bots)
    for bot in bots:
        assert "offline" in bot.voice.honesty.lower()
        assert bot.reply_prompt and bot.interject_prompt
        assert 0 <= bot.shyness <= 1
        assert bot.source.endswith(".yaml")
    assert sorted(p.name for p in BUNDLED_DIR.glob("*.yaml")) == sorted(b.source for b in bots)


def test_a_minimal_file_gets_defaults() -> None:
    bot = parse_personality(bot_yaml("zed", aliases=("zee",)), "zed.yaml")
    assert bot.triggers == ("zed", "zee")
    assert bot.model is None
    assert bot.reply_temperature == 0.7 and bot.interject_temperature == 0.9
    assert "offline" in bot.voice.honesty
    assert bot.bot().wire() == {
        "name": "zed",
        "displayName": "Zed",
        "personality": "test bot zed",
        "enabled": True,
    }


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (bot_yaml("zed", shyness=1.5), "shyness"),
        (bot_yaml("Not A Name"), "name"),
        (bot_yaml("zed", aliases=("bad alias",)), "aliases"),
        (bot_yaml("zed", colour="red"), "colour"),
        (bot_yaml("zed", temperature="{reply: 9}"), "temperature.reply"),
        (bot_yaml("zed", model="''"), "model"),
        ("name: zed\ndisplay_name: Zed\nrole: r\n", "prompts"),
        (
            bot_yaml("zed")
            + "offline: {openers: ['{nope}'], lines: [a], closers: [b], interjections: [c], "
            "honesty: 'offline'}\n",
            "offline.openers",
        ),
        (
            bot_yaml("zed")
            + "offline: {openers: [a], lines: [a], closers: [b], interjections: [c], "
            "honesty: 'I am a real AI'}\n",
            "offline.honesty",
        ),
    ],
)
def test_a_bad_field_is_named_with_its_file(tmp_path: Path, text: str, field: str) -> None:
    write(tmp_path, "good.yaml", bot_yaml("good"))
    write(tmp_path, "broken-bot.yaml", text)
    with pytest.raises(BotConfigError) as err:
        load_personalities(tmp_path)
    message = str(err.value)
    assert message.startswith("broken-bot.yaml: "), message
    assert f"field '{field}'" in message, message


def test_invalid_yaml_is_refused_with_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "mangled.yaml", "name: zed\nprompts: [unclosed\n")
    with pytest.raises(BotConfigError, match=r"^mangled\.yaml: not valid YAML at line \d+"):
        load_personalities(tmp_path)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "list.yaml", "- just\n- a list\n")
    with pytest.raises(BotConfigError, match=r"^list\.yaml: expected a mapping"):
        load_personalities(tmp_path)


def test_a_trigger_claimed_twice_names_both_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", bot_yaml("alpha", aliases=("shared",)))
    write(tmp_path, "b.yaml", bot_yaml("beta", aliases=("shared",)))
    with pytest.raises(BotConfigError) as err:
        load_personalities(tmp_path)
    assert str(err.value) == "b.yaml: field 'aliases': 'shared' is already used by a.yaml"


def test_an_empty_or_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BotConfigError, match="no bot personalities"):
        load_personalities(tmp_path)
    with pytest.raises(BotConfigError, match="not a folder"):
        load_personalities(tmp_path / "nope")


def test_the_server_refuses_to_start_with_a_bad_file(make_server: object, tmp_path: Path) -> None:
    folder = tmp_path / "bots"
    write(folder, "ok.yaml", bot_yaml("ok"))
    write(folder, "broken-bot.yaml", bot_yaml("broken", shyness=7))
    srv: Server = make_server(start=False, BOTS_DIR=str(folder))  # type: ignore[operator]
    proc = subprocess.run(
        [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(srv.port)],
        cwd=ROOT,
        env=srv.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "broken-bot.yaml: field 'shyness'" in proc.stdout + proc.stderr


def test_get_api_bots_lists_the_configured_bots(make_server: object, tmp_path: Path) -> None:
    folder = tmp_path / "bots"
    write(folder, "a.yaml", bot_yaml("alpha", aliases=("al",), shyness=0.25))
    write(folder, "b.yaml", bot_yaml("beta", model="tiny-model"))
    srv: Server = make_server(BOTS_DIR=str(folder))  # type: ignore[operator]
    body = httpx.get(f"{srv.http}/api/bots", timeout=5).json()
    assert body["provider"] == "offline"
    assert body["bots"] == [
        {
            "name": "alpha",
            "displayName": "Alpha",
            "personality": "test bot alpha",
            "triggers": ["@alpha", "@al"],
            "shyness": 0.25,
            "model": None,
            "enabled": True,
        },
        {
            "name": "beta",
            "displayName": "Beta",
            "personality": "test bot beta",
            "triggers": ["@beta"],
            "shyness": 0.0,
            "model": "tiny-model",
            "enabled": True,
        },
    ]
