"""The workload objective: named workloads, explicit numbers, seconds per turn."""

import math

import pytest

from moetui.errors import ConfigError
from moetui.sizing.workload import WORKLOADS, Workload, parse_workload


def test_named_workloads_and_defaults():
    assert parse_workload(None) is WORKLOADS["chat"]
    chat = parse_workload("Chat")
    assert (chat.prompt_tokens, chat.depth, chat.reply_tokens) == (2048, 8192, 256)
    assert parse_workload("long-prompt").prompt_tokens == 16384
    assert parse_workload("decode").prompt_tokens == 0


def test_explicit_numbers():
    w = parse_workload("1000,4000,100")
    assert (w.prompt_tokens, w.depth, w.reply_tokens) == (1000, 4000, 100)
    assert w.context_needed == 5100
    assert Workload.from_dict(w.to_dict()) == w


@pytest.mark.parametrize("bad", ["nope", "1,2", "-1,0,5", "0,0,0", "1.5,2,3"])
def test_bad_workloads_are_config_errors(bad):
    with pytest.raises(ConfigError):
        parse_workload(bad)


def test_turn_seconds():
    chat = WORKLOADS["chat"]
    assert chat.turn_seconds(2048.0, 256.0) == pytest.approx(2.0)
    assert WORKLOADS["decode"].turn_seconds(None, 128.0) == pytest.approx(2.0)
    assert math.isinf(chat.turn_seconds(0.0, 100.0))
    assert math.isinf(chat.turn_seconds(1000.0, float("nan")))
