"""Chat screen, driven through the real app with Pilot, on a tiny MoE proxy in a real llama-cpp-python
worker: tokens stream into the log, the stats bar fills, Stop cancels, a broken model shows an error and
the app stays up, and closing the app leaves no model process behind."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from pathlib import Path

import pytest

import psutil
from ui_pilot import wait_for

from moetui.config import RunConfig
from moetui.hardware import Rig
from moetui.runtime.client import LoadInfo, ModelWorker
from moetui.ui.app import MoetuiApp
from moetui.ui.collector import CollectorHold
from moetui.ui.screens.chat import ChatScreen
from moetui.ui.state import ConfigChosen
from moetui.ui.widgets.chat_log import ChatLog
from moetui.ui.widgets.flow_error_dialog import FlowErrorDialog
from moetui.ui.widgets.stats_bar import ChatStatsBar

SIZE = (80, 24)


async def open_chat(app: MoetuiApp, pilot, config: RunConfig | None = None) -> ChatScreen:  # type: ignore[no-untyped-def]
    if config is not None:
        app.post_message(ConfigChosen(config))
        await pilot.pause()
    await pilot.press("c")
    # in the stack, not necessarily on top: a model that fails fast already shows its error dialog over it
    await wait_for(pilot, lambda: any(isinstance(s, ChatScreen) for s in app.screen_stack), what="the chat screen")
    return next(s for s in app.screen_stack if isinstance(s, ChatScreen))


def worker_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "moetui.runtime.worker_main" in " ".join(p.cmdline())]


async def type_and_send(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    for ch in text:
        await pilot.press("space" if ch == " " else ch)
    await pilot.press("enter")


def test_chat_streams_tokens_and_stats_then_closes_the_worker(tiny_moe: Path, cpu_rig: Rig) -> None:
    async def run() -> None:
        app = MoetuiApp(model_path=str(tiny_moe), rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
            chat = await open_chat(app, pilot)
            chat.max_tokens = 48
            await wait_for(pilot, lambda: chat.loaded_config is not None, what="the model to load")
            assert chat.loaded_config == app.state.active_config()
            assert "ctx" in str(chat.query_one("#chat-title").render())
            assert "random weights" in chat.query_one(ChatLog).transcript()  # a proxy says so, as the CLI demo does
            await type_and_send(pilot, "hello there")
            await wait_for(pilot, lambda: chat.last_done is not None, what="the reply")
            log = chat.query_one(ChatLog)
            roles = [m.role for m in log.messages]
            assert roles[-2:] == ["user", "assistant"] and log.messages[-2].text == "hello there"
            reply = log.messages[-1]
            assert reply.text and reply.text == chat.last_done.text
            assert chat.last_done.stats.tokens == 48 and reply.note == "max 48 tokens"
            bar = chat.query_one(ChatStatsBar)
            assert bar.tokens == 48 and bar.decode_tps_avg and bar.decode_tps_avg > 0
            assert bar.rss_bytes and bar.rss_bytes > 1 << 20
            # CPU-only rig: every expert tensor lives in RAM, as llama.cpp's load log said
            assert bar.experts_total > 0 and bar.experts_ram == bar.experts_total
            assert "tg" in str(bar.render()) and f"expert tensors in RAM {bar.experts_total}/{bar.experts_total}" in str(bar.render())
            assert chat.history[-1] == {"role": "assistant", "content": reply.text}
            assert gc.isenabled() and not chat.collector.holding  # held only while the reply streamed
            pid = chat.model_worker.pid
            assert psutil.pid_exists(pid)
            await pilot.press("escape", "t")  # leave Chat (installed, not visible) before quitting
            await wait_for(pilot, lambda: not isinstance(app.screen, ChatScreen), what="another screen")
            assert chat.model_worker is not None and chat.model_worker.alive  # kept for a quick return
        # the app closed: the worker process is gone (no orphans)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert worker_children() == []

    asyncio.run(run())


def test_stop_cancels_the_reply_and_new_chat_clears(tiny_moe: Path, cpu_rig: Rig) -> None:
    async def run() -> None:
        app = MoetuiApp(model_path=str(tiny_moe), rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
            chat = await open_chat(app, pilot)
            chat.max_tokens = 100_000  # would run for many seconds: only Stop ends it
            chat.sampling = {"temperature": 0.0}
            await wait_for(pilot, lambda: chat.loaded_config is not None, what="the model to load")
            await type_and_send(pilot, "go")
            await wait_for(pilot, lambda: chat.query_one(ChatLog).messages[-1].text != "", what="first tokens")
            assert chat.generating and not chat.query_one("#chat-stop").disabled
            # the live stats arrive at >= 2 Hz while it generates
            n0, t_start = chat.stats_events, time.monotonic()
            await pilot.pause(2.2)
            assert chat.generating and chat.stats_events - n0 >= 4, (chat.stats_events - n0, time.monotonic() - t_start)
            bar = chat.query_one(ChatStatsBar)
            assert bar.phase == "generate" and bar.decode_tps and bar.tokens > 0
            t0 = time.monotonic()
            await pilot.press("escape")
            await wait_for(pilot, lambda: chat.last_done is not None, timeout=10, what="the stop")
            assert time.monotonic() - t0 < 5
            assert chat.last_done.cancelled and 0 < chat.last_done.stats.tokens < 100_000
            assert chat.query_one(ChatLog).messages[-1].note == "stopped"
            assert not chat.generating and chat.query_one("#chat-stop").disabled
            # the worker is still usable after a stop, with the system prompt applied
            chat.max_tokens = 8
            chat.query_one("#chat-system-input").value = "Answer in one word."
            chat.last_done = None
            await type_and_send(pilot, "again")
            await wait_for(pilot, lambda: chat.last_done is not None, what="the second reply")
            assert chat.last_done.stats.tokens == 8 and len(chat.history) == 4
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: chat.query_one(ChatLog).messages == [], what="the log to clear")
            assert chat.history == []

    asyncio.run(run())


def test_a_truncated_model_shows_an_error_and_the_app_stays_up(tiny_moe: Path, cpu_rig: Rig, tmp_path: Path) -> None:
    broken = tmp_path / "truncated.gguf"
    broken.write_bytes(tiny_moe.read_bytes()[: tiny_moe.stat().st_size // 2])

    async def run() -> None:
        app = MoetuiApp(rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_chat(app, pilot, RunConfig(model_path=str(broken), n_ctx=512))
            await wait_for(pilot, lambda: isinstance(app.screen, FlowErrorDialog), what="the error dialog")
            dialog = app.screen
            assert "did not load" in dialog.title_text
            assert chat.model_worker is None and chat.loaded_config is None and not chat.model_loading
            assert "Could not load truncated.gguf" in str(chat.query_one("#chat-title").render())
            await pilot.press("escape")
            await pilot.pause(1.0)
            # back on Chat, it does not retry the broken file by itself (no dialog loop)
            assert app.screen is chat and app.is_running and not chat.model_loading
            log = chat.query_one(ChatLog)
            assert [m.role for m in log.messages] == ["error"]
            # the app is still usable: a good config loads and answers
            chat.max_tokens = 4
            app.post_message(ConfigChosen(RunConfig(model_path=str(tiny_moe), n_ctx=512)))
            await wait_for(pilot, lambda: chat.loaded_config is not None, what="the good model")
            # no old error under the new model (stale state): the log starts afresh for it
            assert "error" not in [m.role for m in log.messages], log.transcript()
            await type_and_send(pilot, "hi")
            await wait_for(pilot, lambda: chat.last_done is not None, what="a reply")
            assert chat.last_done.stats.tokens == 4
        assert worker_children() == []

    asyncio.run(run())


def test_quitting_while_the_model_loads_leaves_no_model_process(tiny_moe: Path, cpu_rig: Rig,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The load thread holds a running model process when the app quits: it must close it itself, since no
    screen is left to take it."""
    loaded: list[ModelWorker] = []
    release = threading.Event()
    real_start = ModelWorker.start

    def start_then_wait(worker: ModelWorker, config: RunConfig) -> LoadInfo:
        info = real_start(worker, config)
        loaded.append(worker)
        release.wait(30)  # the app quits while the process is up and the load not yet reported
        return info

    monkeypatch.setattr(ModelWorker, "start", start_then_wait)

    async def run() -> None:
        app = MoetuiApp(rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_chat(app, pilot, RunConfig(model_path=str(tiny_moe), n_ctx=512))
            await wait_for(pilot, lambda: bool(loaded), what="the model process to start")
            assert loaded[0].alive and chat.model_loading and chat.model_worker is None
        release.set()  # the app has closed; asyncio.run then waits for the load thread to end

    asyncio.run(run())
    deadline = time.monotonic() + 15
    while loaded[0].alive and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not loaded[0].alive and worker_children() == []


def test_a_worker_killed_mid_reply_is_reported_and_the_next_message_reloads(tiny_moe: Path, cpu_rig: Rig) -> None:
    async def run() -> None:
        app = MoetuiApp(rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            # a context long enough that the reply is still streaming when the worker dies (the streaming
            # loop runs the tiny proxy at over 1000 tok/s here: 512 tokens are done in half a second)
            chat = await open_chat(app, pilot, RunConfig(model_path=str(tiny_moe), n_ctx=32768))
            chat.max_tokens = 100_000
            await wait_for(pilot, lambda: chat.loaded_config is not None, what="the model to load")
            first_pid = chat.model_worker.pid
            await type_and_send(pilot, "go")
            await wait_for(pilot, lambda: chat.query_one(ChatLog).messages[-1].text != "", what="first tokens")
            assert chat.collector.holding and not gc.isenabled()  # no full collection freezes the stream
            psutil.Process(first_pid).kill()  # what the OOM killer does
            await wait_for(pilot, lambda: isinstance(app.screen, FlowErrorDialog), what="the error dialog")
            assert "SIGKILL" in app.screen.message
            await pilot.press("escape")
            assert chat.model_worker is None and not chat.generating
            assert gc.isenabled()  # a reply that failed gives the collector back
            assert chat.query_one(ChatLog).messages[-1].role == "error"
            chat.max_tokens = 4
            await type_and_send(pilot, "again")
            await wait_for(pilot, lambda: chat.last_done is not None, what="a reply after the reload")
            assert chat.model_worker.pid != first_pid and chat.last_done.stats.tokens == 4

    asyncio.run(run())


def test_draft_acceptance_shows_in_the_stats_bar(tiny_moe: Path, tiny_draft: Path, cpu_rig: Rig) -> None:
    from moetui.config import DraftConfig

    config = RunConfig(model_path=str(tiny_moe), n_ctx=512,
                       draft=DraftConfig(kind="model", model_path=str(tiny_draft), n_gpu_layers=0, draft_max=4))

    async def run() -> None:
        app = MoetuiApp(rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_chat(app, pilot, config)
            chat.max_tokens = 24
            chat.sampling = {"temperature": 0.0}
            await wait_for(pilot, lambda: chat.loaded_config is not None, what="target + draft to load")
            chat.send("hello")
            await wait_for(pilot, lambda: chat.last_done is not None, what="a reply")
            stats = chat.last_done.stats
            assert stats.draft_proposed > 0
            bar = chat.query_one(ChatStatsBar)
            assert bar.acceptance == stats.acceptance and f"draft acc {stats.acceptance:.0%}" in str(bar.render())

    asyncio.run(run())


def test_reply_text_is_drawn_on_the_tick_with_no_token_after_it(tiny_moe: Path, cpu_rig: Rig) -> None:
    """Text the generation thread hands over is drawn within a tick even when no later token comes to
    wake the screen (a slow model between tokens); with no reply streaming the tick is paused."""
    async def run() -> None:
        app = MoetuiApp(model_path=str(tiny_moe), rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
            chat = await open_chat(app, pilot)
            await wait_for(pilot, lambda: chat.loaded_config is not None, what="the model to load")
            reply = chat._reply = chat.query_one(ChatLog).add_message("assistant", "")

            def hand_over(text: str) -> None:  # what _generate's thread does with a token, and nothing more
                def put() -> None:
                    with chat._unshown_lock:
                        chat._unshown.append(text)
                t = threading.Thread(target=put)
                t.start()
                t.join()

            chat.generating = True
            hand_over("first words")
            await wait_for(pilot, lambda: "first words" in reply.text, timeout=1.0, what="the tick to draw the text")
            chat.generating = False
            await pilot.pause()
            hand_over(" later")
            await pilot.pause(0.3)
            assert "later" not in reply.text  # paused while idle: nothing drains
            chat.generating = True
            await wait_for(pilot, lambda: reply.text.endswith("first words later"), timeout=1.0, what="the resumed tick")
            chat.generating, chat._reply = False, None

    asyncio.run(run())


def test_the_collector_hold_gives_back_only_what_it_took() -> None:
    hold = CollectorHold()
    try:
        hold.hold()
        assert not gc.isenabled() and hold.holding
        hold.hold()  # twice is once
        hold.release()
        assert gc.isenabled() and not hold.holding
        gc.disable()  # someone else turned it off: a hold and a release leave it off
        hold.hold()
        hold.release()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_streaming_message_draws_the_same_lines_as_the_finished_one() -> None:
    """While streaming, a message wraps only its unsettled tail; the lines must match wrapping it whole."""
    from textual.app import App

    from moetui.ui.widgets.chat_log import ChatMessage

    words = ["lighthouse", "keeper", "a", "storm", "\n", "\ufffd\ufffd", "wave", "x" * 50, "of", "night", " "]
    text = " ".join(words[(i * 7) % len(words)] for i in range(600))

    class One(App[None]):
        def compose(self):  # type: ignore[no-untyped-def]
            yield ChatLog()

    async def main() -> None:
        app = One()
        async with app.run_test(size=(60, 20)) as pilot:
            msg = app.query_one(ChatLog).add_message("assistant", "")
            msg.streaming = True
            await pilot.pause()
            for i in range(0, len(text), 37):
                msg.text = text[:i + 37]
                msg.render_line(0)  # as a repaint would: settles lines as the text grows
            width = msg.content_size.width
            streamed = [msg.render_line(y).text.rstrip() for y in range(msg._wrapped_lines())]
            whole = [line.plain.rstrip() for line in msg.render().wrap(app.console, width)]
            assert msg._settled_at > len(text) // 2  # most of it was wrapped once, not per batch
            assert streamed == whole

    asyncio.run(main())


# ---- borders that hold: what a model emits never moves the terminal's cursor ----------------------------
def border_faults(text: str, width: int) -> list[str]:
    """Lines of a rendered screen that would break in a terminal: a character the terminal acts on (ESC,
    CR, TAB, ...), a line not exactly `width` cells wide, a chat-log line whose side borders are not at
    both ends."""
    from rich.cells import cell_len

    faults, inside = [], False
    for i, line in enumerate(text.splitlines()):
        if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line):
            faults.append(f"line {i}: control character in {line!r}")
        if cell_len(line) != width:
            faults.append(f"line {i}: {cell_len(line)} cells wide, not {width}")
        if line.startswith("╭"):
            inside = True
        elif line.startswith("╰"):
            inside = False
        elif inside and not (line.startswith("│") and line.endswith("│")):
            faults.append(f"line {i}: the log's border breaks: {line!r}")
    return faults


BYTE_TOKENS = ["The keeper", "\x1b[31m", " lit", "\tthe", " lamp\r\n", "\x08\x00", " at dusk", "\x7f\x85", "\r",
               "and waited", "\u2028", " for ships"]


def test_control_characters_in_a_reply_are_drawn_not_obeyed_at_80x24_and_120x40() -> None:
    """Random weights (and, now and then, a real model's byte tokens) emit ESC, CR, TAB, BS: drawn as they
    came, they moved the terminal's cursor and the log's right border broke. Streamed and finished."""
    async def run(size: tuple[int, int]) -> None:
        app = MoetuiApp(model_path=None, rig=None, detect=False, remember=False)
        async with app.run_test(size=size) as pilot:
            chat = await open_chat(app, pilot)
            log = chat.query_one(ChatLog)
            log.add_message("user", "a story,\tplease\x1b[0m")
            msg = log.add_message("assistant", "")
            msg.streaming = True
            for _ in range(8):  # long enough to scroll: the scrollbar sits inside the border too
                for piece in BYTE_TOKENS:
                    msg.text += piece
                    await pilot.pause()
                    assert border_faults(app.screen_text(), size[0]) == [], size
            msg.streaming = False
            msg.text = "".join(BYTE_TOKENS)  # the finished text, as the worker reports it
            await pilot.pause()
            assert border_faults(app.screen_text(), size[0]) == [], size
            assert msg.text.startswith("The keeper␛[31m lit    the lamp\n␈␀ at dusk␡\ufffd\nand waited\n for ships")
            assert "a story,    please␛[0m" in app.screen_text()

    for size in ((80, 24), (120, 40)):
        asyncio.run(run(size))


def test_a_real_random_weights_reply_keeps_the_borders_whole(tiny_moe: Path, cpu_rig: Rig) -> None:
    async def run() -> None:
        app = MoetuiApp(model_path=str(tiny_moe), rig=cpu_rig, detect=False, remember=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.state.plan is not None, what="the plan")
            chat = await open_chat(app, pilot)
            chat.max_tokens = 300
            await wait_for(pilot, lambda: chat.loaded_config is not None, what="the model to load")
            await type_and_send(pilot, "tell me a story")
            frames = 0
            while chat.last_done is None and frames < 400:
                await pilot.pause(0.05)
                frames += 1
                assert border_faults(app.screen_text(), 120) == []
            await wait_for(pilot, lambda: chat.last_done is not None, what="the reply")
            await pilot.pause()
            assert border_faults(app.screen_text(), 120) == []

    asyncio.run(run())


def test_chat_opened_as_the_app_closes_starts_nothing(tiny_moe: Path, cpu_rig: Rig) -> None:
    """Best config opens Chat as its flow ends; a test (or a user's quit) can close the app in that moment.
    The screen then mounts while its widgets are being removed: it must not fail, nor start a model load
    (seen in CI: NoMatches for #chat-input in on_mount)."""
    async def run() -> None:
        app = MoetuiApp(rig=cpu_rig, detect=False)
        async with app.run_test(size=SIZE) as pilot:
            app.post_message(ConfigChosen(RunConfig(model_path=str(tiny_moe), n_ctx=512)))
            await pilot.pause()
            app.push_screen(ChatScreen())
            app.exit()

    asyncio.run(run())
    assert worker_children() == []
