"""The exported llama-cpp-python script really runs: it loads the tiny MoE proxy with the config's
settings, the expert overrides take effect (llama.cpp's own log says so), and it generates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from moetui.config import DraftConfig, RunConfig
from moetui.export.python_snippet import python_snippet
from moetui.sizing.overrides import ALL_PARTS, cpu_expert_overrides

from conftest import repack_ok


def _run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "load.py"
    path.write_text(script)
    return subprocess.run([sys.executable, str(path)], check=False, capture_output=True, text=True, timeout=300)


def test_snippet_loads_with_overrides_and_settings(tiny_moe: Path, tmp_path: Path) -> None:
    odd = tmp_path / "dir with 'quotes' $x ü"
    odd.mkdir()
    model = odd / "m.gguf"
    model.symlink_to(tiny_moe)
    cfg = RunConfig(model_path=str(model), n_ctx=768, n_batch=256, n_ubatch=128, n_threads=2, n_threads_batch=2,
                    cache_type_k="q8_0", cache_type_v="f16", load_mode="none", flash_attn="auto", seed=7,
                    overrides=cpu_expert_overrides({0: ALL_PARTS, 2: {"down"}}), repack=repack_ok())
    p = _run(python_snippet(cfg, max_tokens=4), tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    log = p.stderr
    overridden = {ln.split()[1] for ln in log.splitlines() if "buffer type overridden" in ln}
    assert {"blk.0.ffn_up_exps.weight", "blk.0.ffn_gate_exps.weight", "blk.0.ffn_down_exps.weight",
            "blk.2.ffn_down_exps.weight"} <= overridden
    assert not any(t.startswith(("blk.1.", "blk.3.")) or t == "blk.2.ffn_up_exps.weight" for t in overridden)
    assert re.search(r"llama_context: n_ctx\s+= 768\n", log)
    assert re.search(r"llama_context: n_ubatch\s+= 128\n", log)
    assert re.search(r"llama_context: flash_attn\s+= auto\n", log)  # Llama() alone cannot say auto
    assert "(load_mode = none)" in log  # nor the load mode
    assert re.search(r"K \(q8_0\)", log) and re.search(r"V \(f16\)", log)
    if not cfg.repack:  # --no-repack reached llama.cpp: no repacked copies
        assert "CPU_REPACK model buffer" not in log


def test_snippet_with_prompt_lookup_draft_runs(tiny_moe: Path, tmp_path: Path) -> None:
    for draft_min in (0, 2):
        cfg = RunConfig(model_path=str(tiny_moe), n_ctx=512, draft=DraftConfig(kind="ngram", draft_max=4, draft_min=draft_min),
                        repack=repack_ok())
        script = python_snippet(cfg, prompt="a b a b a b", max_tokens=4)
        assert ("PromptLookupDraft(draft_max=4, draft_min=2)" in script) == (draft_min == 2)
        p = _run(script, tmp_path)
        assert p.returncode == 0, p.stderr[-3000:]


def test_snippet_with_draft_model_runs(tiny_moe: Path, tiny_draft: Path, tmp_path: Path) -> None:
    cfg = RunConfig(model_path=str(tiny_moe), n_ctx=512,
                    draft=DraftConfig(model_path=str(tiny_draft), draft_max=3, n_gpu_layers=0), repack=repack_ok())
    p = _run(python_snippet(cfg, max_tokens=4), tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "without the draft model" not in p.stderr
    assert p.stderr.count("llama_model_loader: loaded meta data") >= 2 or str(tiny_draft) in p.stderr
