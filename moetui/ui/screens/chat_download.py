"""Chat's offer to download a hub model that is not on this machine yet (a catalog quant picked in Models,
or a REPO:QUANT given on the command line): a dialog instead of the worker's "no such model file", the
download in a thread worker posting typed messages (DownloadProgressed, DownloadEnded in chat_messages.py)
with its progress in Chat's status line (Esc cancels, a later one resumes), then the file is selected,
planned and loaded like any other."""

from __future__ import annotations

import threading

from textual import work

from moetui.errors import MoetuiError, first_line, in_words
from moetui.hub.catalog import find_quant
from moetui.hub.download import DownloadCancelled, download_model
from moetui.model.info import ModelInfo
from moetui.ui.screens.chat_messages import DownloadEnded, DownloadProgressed
from moetui.ui.state import ModelSelected, app_state
from moetui.ui.widgets.chat_log import ChatLog
from moetui.ui.widgets.choice_dialog import ChoiceDialog
from moetui.ui.widgets.flow_error_dialog import show_error
from moetui.ui.widgets.format import gib


class DownloadOffer:
    """Mixed into ChatScreen: it provides status_line, offered, downloading and _download_cancel."""

    _download_on_mount: str | None = None

    status_line: str
    offered: str | None
    downloading: str | None
    _download_cancel: threading.Event

    def offer_download(self, ref: str) -> None:
        """Ask whether to download REF now; Best config (download + tune + chat) is the other way on."""
        self.offered = ref
        size = _download_size(ref, app_state(self.app).model_info)
        dialog = ChoiceDialog(
            f"{ref.split('/')[-1]} is not downloaded",
            f"{ref} is not on this machine yet, so it cannot chat. Download it now "
            f"({size} into the Hugging Face cache, resumable, checked against the hub's SHA-256)? "
            "Best config downloads it too, then tunes it for this rig and opens Chat.",
            [("download", f"Download {size}"), ("best", "Best config (download + tune)")])
        self.app.push_screen(dialog, lambda choice: self._download_chosen(ref, choice))

    def _download_chosen(self, ref: str, choice: str | None) -> None:
        if choice == "download":
            self.start_download(ref)
        elif choice == "best":
            self.app.action_open("best")  # type: ignore[attr-defined]
        else:
            self.status_line = not_downloaded(ref)

    def download_now(self, ref: str) -> None:
        """Download REF without asking (the user pressed Download on Models); when this screen is not up yet,
        as soon as it is: its status line shows the progress."""
        self.offered = ref  # asked and answered: no dialog for it
        if self.is_mounted:  # type: ignore[attr-defined]
            self.start_download(ref)
        else:
            self.downloading = ref  # on_mount starts it; meanwhile nothing else loads
            self._download_on_mount = ref

    def start_pending_download(self) -> None:
        ref, self._download_on_mount = self._download_on_mount, None
        if ref is not None:
            self.start_download(ref)

    def start_download(self, ref: str) -> None:
        self.downloading = ref
        self.refresh_bindings()  # Esc: "Stop" cancels the download while it runs
        self._download_cancel = threading.Event()
        self.status_line = f"Downloading {ref} … (Esc cancels; it resumes later)"
        self.query_one(ChatLog).add_message("info", f"Downloading {ref} into the Hugging Face cache …")
        self._download(ref, self._download_cancel)

    @work(thread=True, exclusive=True, group="chat-download", exit_on_error=False)
    def _download(self, ref: str, cancel: threading.Event) -> None:
        """Download REF, posting its progress and its end to the screen (post_message is thread-safe)."""
        try:
            result = download_model(ref, progress=lambda p: self.post_message(DownloadProgressed(ref, p)),
                                    cancel=cancel, progress_interval_s=0.2)
        except DownloadCancelled:
            self.post_message(DownloadEnded(ref))
            return
        except Exception as exc:  # noqa: BLE001 - shown in words; the app stays up
            self.post_message(DownloadEnded(ref, error=exc))
            return
        self.post_message(DownloadEnded(ref, path=result.path))

    def on_download_progressed(self, message: DownloadProgressed) -> None:
        p = message.progress
        eta = f" · {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        what = "verifying" if p.phase == "verify" else f"{gib(int(p.speed_bps))}/s{eta}"
        self.status_line = (f"Downloading {message.ref}: {gib(p.bytes_done)} of {gib(p.bytes_total)} "
                            f"({p.fraction:.0%}) · {what} (Esc cancels)")

    def on_download_ended(self, message: DownloadEnded) -> None:
        ref, path, exc = message.ref, message.path, message.error
        self.downloading = None
        self.refresh_bindings()  # Esc: "Stop" cancels the download while it runs
        log = self.query_one(ChatLog)
        if path is not None:
            log.add_message("info", f"Downloaded {ref}: {path.name}. Loading it …")
            self.post_message(ModelSelected(str(path), None))  # the App inspects and plans the file, Chat loads it
        elif exc is None:
            self.status_line = f"Download of {ref} cancelled; the part already fetched is kept for next time."
            log.add_message("info", "Download cancelled.")
        else:
            self.status_line = f"Could not download {ref}: {first_line(in_words(exc), 120)}"
            log.add_message("error", first_line(in_words(exc)))
            show_error(self, "The download failed", exc)

def not_downloaded(ref: str) -> str:
    """Chat's status line for a hub model that is not downloaded."""
    return (f"{ref} is not downloaded, so it cannot chat yet: send a message to be asked again, or run Best config "
            "(b), which downloads and tunes it.")


def _download_size(ref: str, info: ModelInfo | None) -> str:
    """What a download of REF costs, from the remote header read (exact) or the catalog (about)."""
    size = info.file_bytes if info is not None and info.path.startswith("hf://") else 0
    if size:
        return gib(size)
    try:
        found = find_quant(ref)
    except MoetuiError:
        found = None
    return f"~{gib(found[1].size_bytes)}" if found else "its size on the hub"
