"""The history endpoints of the app (issue 17): sign-in, save, list, delete, export, compare.

Sign-in is Gradio's ``auth=``, checked against the users file named by
``SKINLENS_USERS`` (:mod:`skin.history.users`; ``python -m skin.users add
NAME``). The user of every call is ``gr.Request.username``, set by Gradio from
the signed-in session, never an argument a client sends. Without a users file
the endpoints exist but answer "sign in to keep a history", and no database is
opened. The store is ``SKINLENS_DB`` (:mod:`skin.history.store`).
"""

from __future__ import annotations

import functools
import os

import gradio as gr

from skin.history.users import USERS_ENV, Users
from skin.service.history import SIGN_IN, HistoryService


def auth_from_env():
    """Gradio's ``auth`` callable from ``$SKINLENS_USERS``, or ``None`` when it is unset."""
    if not os.environ.get(USERS_ENV, "").strip():
        return None
    users = Users(must_exist=True)
    return users.verify


def user_errors(title: str):
    """Decorator: ValueErrors (bad upload, no sign-in, unknown entry, bad argument) → ``gr.Error``
    with the message, under ``title``."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ValueError as e:
                raise gr.Error(str(e), title=title) from e

        return wrapper

    return decorate


_errors = user_errors("SkinLens history")


class HistoryHandlers:
    """The named endpoints; ``history`` is ``None`` when sign-in is not configured."""

    def __init__(self, history: HistoryService | None):
        self.history = history

    def _on(self, request: gr.Request | None) -> tuple[HistoryService, str]:
        user = getattr(request, "username", None) if request is not None else None
        if self.history is None or not user:
            raise ValueError(SIGN_IN)
        return self.history, user

    @_errors
    def api_history_save(self, image: str, note: str = "", keep_photo: bool = False,
                         request: gr.Request = None) -> dict:
        """Analyse a photo and save its scores in the signed-in user's history."""
        history, user = self._on(request)
        if not image:
            raise ValueError("no image: pass an image file, e.g. handle_file('photo.jpg')")
        return history.save(user, image, note=note or "", keep_photo=bool(keep_photo))

    @_errors
    def api_history(self, request: gr.Request = None) -> dict:
        history, user = self._on(request)
        return history.entries(user)

    @_errors
    def api_history_delete(self, entry_id: str, request: gr.Request = None) -> dict:
        history, user = self._on(request)
        return history.delete(user, (entry_id or "").strip())

    @_errors
    def api_history_export(self, request: gr.Request = None) -> str:
        history, user = self._on(request)
        return history.export(user)

    @_errors
    def api_compare(self, id_a: str, id_b: str, request: gr.Request = None) -> dict:
        history, user = self._on(request)
        return history.compare(user, id_a, id_b)


def add_history_endpoints(history: HistoryService | None, image_input) -> None:
    """Hidden components and the named endpoints, inside the caller's ``gr.Blocks``."""
    on = HistoryHandlers(history)
    with gr.Column(visible=False):
        note = gr.Textbox(label="note", value="")
        keep = gr.Checkbox(label="keep_photo", value=False)
        entry_id = gr.Textbox(label="id", value="")
        id_a = gr.Textbox(label="id_a", value="")
        id_b = gr.Textbox(label="id_b", value="")
        out = gr.JSON(label="result")
        out_file = gr.File(label="export")
        buttons = [gr.Button() for _ in range(5)]
    buttons[0].click(on.api_history_save, [image_input, note, keep], out, api_name="history_save",
                     api_description="image[, note, keep_photo] → {id, saved_at} (signed-in users)",
                     concurrency_id="model")
    buttons[1].click(on.api_history, None, out, api_name="history",
                     api_description="→ {entries, trends}, newest first (signed-in users)")
    buttons[2].click(on.api_history_delete, entry_id, out, api_name="history_delete",
                     api_description='id or "all" → {deleted} (signed-in users)')
    buttons[3].click(on.api_history_export, None, out_file, api_name="history_export",
                     api_description="→ zip of history.json and history.csv (signed-in users)")
    buttons[4].click(on.api_compare, [id_a, id_b], out, api_name="compare",
                     api_description="id_a, id_b → {verdicts, comparable, reason} (signed-in users)")
