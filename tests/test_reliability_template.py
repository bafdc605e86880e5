"""Issue 19: chat templates come from GGUF metadata, i.e. from whoever made the file. They are rendered
in jinja2's immutable sandbox; a template that reaches for Python internals fails cleanly (a ConfigError
naming the template), runs nothing, and the worker stays up."""

from __future__ import annotations

from pathlib import Path

import pytest

from moetui.config import RunConfig
from moetui.errors import ConfigError
from moetui.runtime.client import ErrorEvent, ModelWorker, collect

HOSTILE = [
    "{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self._TemplateReference__context.joiner.__init__.__globals__.os.system('touch PWNED') }}",
    "{% set _ = messages.append({'role': 'x'}) %}{{ messages }}",
    "{{ messages[0].content.__class__.__base__.__subclasses__() }}",
    "{% for m in messages %}{{ m.content|attr('__class__') }}{% endfor %}",
    "{{ lipsum.__globals__['os'].popen('touch PWNED') }}",
    "{% if %}",  # not even a template
]


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_template_is_refused_by_the_renderer_the_worker_uses(template: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import jinja2
    from llama_cpp import llama_chat_format as cf

    monkeypatch.chdir(tmp_path)
    try:
        out = cf.Jinja2ChatFormatter(template=template, eos_token="</s>", bos_token="<s>")(
            messages=[{"role": "user", "content": "hi"}]).prompt
    except jinja2.TemplateError:
        out = None  # refused
    # refused, or rendered with the unsafe attribute undefined: no Python object ever shows through
    assert out is None or ("class" not in out and "subclasses" not in out), out
    assert not (tmp_path / "PWNED").exists()


@pytest.fixture(scope="module")
def hostile_template_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from moetui.model.gguf_writer import write_gguf
    from moetui.model.proxy import metadata_for, plan_tensors
    from moetui.model.shapes import load_shape, scaled

    shape = scaled(load_shape("qwen3-0.6b"), "tiny")
    md = metadata_for(shape, "Q8_0")
    md["tokenizer.chat_template"] = HOSTILE[0]
    path = tmp_path_factory.mktemp("tmpl") / "hostile-template-Q8_0.gguf"
    write_gguf(path, md, plan_tensors(shape, "Q8_0"))
    return path


def test_worker_chat_with_a_hostile_template_fails_cleanly(hostile_template_model: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with ModelWorker(stall_timeout=60) as w:
        w.start(RunConfig(model_path=str(hostile_template_model), n_ctx=256, n_threads=1))
        events = list(w.chat([{"role": "user", "content": "hi"}], max_tokens=4))
        assert isinstance(events[-1], ErrorEvent)
        err = events[-1].error
        assert isinstance(err, ConfigError) and "chat template cannot be rendered" in str(err)
        assert len(str(err).splitlines()) == 1
        assert w.alive  # the worker carries on: plain generation still works
        assert collect(w.generate("the", max_tokens=4)).text is not None
    assert not (tmp_path / "PWNED").exists()
