"""The history of the app (issue 17): sign-in, the "My history" panel and the named endpoints.

Sign-in is one of two kinds:

* **Self-hosted:** Gradio's ``auth=``, checked against the users file named by
  ``SKINLENS_USERS`` (:mod:`skin.history.users`; ``python -m skin.users add
  NAME``); the user is ``gr.Request.username``.
* **Hugging Face Space with OAuth** (``hf_oauth: true`` in the Space's README,
  which sets ``SPACE_ID`` and ``OAUTH_CLIENT_ID``): a ``gr.LoginButton``; the
  user is the OAuth profile's user name, stored as ``hf:NAME`` (``:`` is not
  allowed in a users-file name, so the two kinds never share a history).

Either way the user of every call comes from the signed-in session, never from
an argument a client sends. Without sign-in the panel says how to set it up,
the endpoints answer "sign in to keep a history", and no database is opened.
The store is ``SKINLENS_DB`` (:mod:`skin.history.store`).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import warnings
from collections.abc import Mapping

import gradio as gr

from skin.history.trend_plot import trend_figure
from skin.history.users import USERS_ENV, Users
from skin.service.history import SIGN_IN, HistoryService

logger = logging.getLogger(__name__)

#: Set on a Hugging Face Space (``SYSTEM=spaces``) whose README metadata has ``hf_oauth: true``.
OAUTH_ENVS = ("SPACE_ID", "OAUTH_CLIENT_ID")
#: Prefix of an OAuth user's history name (a users-file name cannot contain ``:``).
OAUTH_PREFIX = "hf:"
NO_SIGN_IN_HELP = (
    "**Sign in to keep a history.** This SkinLens has no sign-in, so nothing is saved. To keep a private "
    "history of your analyses, whoever runs it adds users with `python -m skin.users add NAME` (the password "
    "is read from standard input) and starts the app with `SKINLENS_USERS=PATH` naming that users file; "
    "on a Hugging Face Space, `hf_oauth: true` in the Space's README adds a *Sign in with Hugging Face* button."
)


def oauth_enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this runs on a Hugging Face Space with OAuth: ``SYSTEM=spaces`` (Gradio's own test for a
    Space), ``SPACE_ID`` and ``OAUTH_CLIENT_ID`` set. Anywhere else Gradio would *mock* the sign-in with
    the machine's Hugging Face token (a Hub call), so the button is only added on a real Space."""
    return env.get("SYSTEM") == "spaces" and all(env.get(name, "").strip() for name in OAUTH_ENVS)


def auth_from_env():
    """Gradio's ``auth`` callable from ``$SKINLENS_USERS``, or ``None`` when it is unset or OAuth signs in."""
    if not os.environ.get(USERS_ENV, "").strip():
        return None
    if oauth_enabled():
        warnings.warn(f"{USERS_ENV} is ignored on a Space with OAuth: users sign in with Hugging Face",
                      stacklevel=2)
        return None
    users = Users(must_exist=True)
    return users.verify


def resolve_user(request: gr.Request | None, profile=None, *, oauth: bool = False) -> str | None:
    """The signed-in user of a call: ``hf:`` + the OAuth profile's user name with ``oauth``, else the
    ``auth=`` session's ``request.username``; ``None`` when nobody is signed in."""
    if oauth:
        name = getattr(profile, "username", None) if profile is not None else None
        return f"{OAUTH_PREFIX}{name}" if name else None
    return getattr(request, "username", None) if request is not None else None


def user_errors(title: str):
    """Decorator: ValueErrors (bad upload, no sign-in, unknown entry, bad argument) → ``gr.Error``
    with the message, under ``title``. The server log gets one line per such error, not Gradio's
    traceback (a user's wrong input is no fault of the server's)."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ValueError as e:
                logger.info("%s: refused %s: %s", title, fn.__name__, e)
                raise gr.Error(str(e), title=title, print_exception=False) from e

        return wrapper

    return decorate


_errors = user_errors("SkinLens history")


class HistoryHandlers:
    """The named endpoints (``api_*``) and the panel's events (``ui_*``); ``history`` is ``None`` when
    sign-in is not configured, ``oauth`` says which kind signs in (:func:`resolve_user`)."""

    def __init__(self, history: HistoryService | None, *, oauth: bool = False):
        self.history = history
        self.oauth = oauth

    def _on(self, request: gr.Request | None, profile=None) -> tuple[HistoryService, str]:
        user = resolve_user(request, profile, oauth=self.oauth)
        if self.history is None or not user:
            raise ValueError(SIGN_IN)
        return self.history, user

    @_errors
    def api_history_save(self, image: str, note: str = "", keep_photo: bool = False, photo_type: str = "",
                         request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> dict:
        """Analyse a photo and save its scores in the signed-in user's history; ``photo_type`` (optional)
        as for ``/predict``."""
        history, user = self._on(request, profile)
        if not image:
            raise ValueError("no image: pass an image file, e.g. handle_file('photo.jpg')")
        return history.save(user, image, note=note or "", keep_photo=bool(keep_photo), photo_type=photo_type or None)

    @_errors
    def api_history(self, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> dict:
        history, user = self._on(request, profile)
        return history.entries(user)

    @_errors
    def api_history_delete(self, entry_id: str, request: gr.Request = None,
                           profile: gr.OAuthProfile | None = None) -> dict:
        history, user = self._on(request, profile)
        return history.delete(user, (entry_id or "").strip())

    @_errors
    def api_history_export(self, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> str:
        history, user = self._on(request, profile)
        return history.export(user)

    @_errors
    def api_compare(self, id_a: str, id_b: str, request: gr.Request = None,
                    profile: gr.OAuthProfile | None = None) -> dict:
        history, user = self._on(request, profile)
        return history.compare(user, id_a, id_b)

    # ---------------- the "My history" panel ----------------
    def _view(self, history: HistoryService, user: str, message: str) -> tuple:
        """What every panel event refreshes: status, table, trend plot, and the three entry pickers."""
        tab = history.tab(user)
        table = [[r["saved_at"][:19].replace("T", " "), r["note"], r["photo_type"], r["tone_bucket"] or "",
                  ", ".join(r["quality_flags"]), "yes" if r["has_photo"] else "", r["id"]] for r in tab.rows]
        choices = [(entry_label(r), r["id"]) for r in tab.rows]
        pickers = tuple(gr.Dropdown(choices=choices, value=None) for _ in range(3))
        return (message, table, trend_figure(tab.trends), *pickers)

    def ui_view(self, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> tuple:
        """The panel on page load: the signed-in user's entries, or how to sign in."""
        try:
            history, user = self._on(request, profile)
        except ValueError:
            return (self._signed_out(), [], None, *(gr.Dropdown(choices=[], value=None) for _ in range(3)))
        return self._view(history, user, f"Signed in as **{user}**.")

    def _signed_out(self) -> str:
        if self.history is None:
            return NO_SIGN_IN_HELP
        how = "the *Sign in with Hugging Face* button" if self.oauth else "your user name and password"
        return f"**Sign in to keep a history**: sign in with {how}, then reload the page."

    @_errors
    def ui_save(self, state, note: str, keep_photo: bool, request: gr.Request = None,
                profile: gr.OAuthProfile | None = None) -> tuple:
        """Save the analysed photo's scores (and the photo, when asked) in the user's history."""
        history, user = self._on(request, profile)
        if not state:
            raise ValueError("analyse a photo first (Analyse button), then save it to your history")
        saved = history.save(user, state["loaded"], note=note or "", keep_photo=bool(keep_photo),
                             photo_type=state.get("photo_type"))  # the type Analyse used, if the user chose one
        return self._view(history, user, f"Saved at {saved['saved_at'][:19].replace('T', ' ')} (UTC).")

    @_errors
    def ui_delete(self, entry_id: str | None, request: gr.Request = None,
                  profile: gr.OAuthProfile | None = None) -> tuple:
        """Delete one of the user's entries."""
        history, user = self._on(request, profile)
        if not entry_id:
            raise ValueError("pick the entry to delete first")
        deleted = history.delete(user, entry_id)["deleted"]
        return self._view(history, user, "Entry deleted." if deleted else "No such entry in your history.")

    @_errors
    def ui_delete_all(self, confirmed: bool, request: gr.Request = None,
                      profile: gr.OAuthProfile | None = None) -> tuple:
        """Delete every entry of the user's, only with the confirmation ticked (then untick it)."""
        history, user = self._on(request, profile)
        if not confirmed:
            raise ValueError('tick "yes, delete my whole history" first: this cannot be undone')
        deleted = history.delete(user, "all")["deleted"]
        return (*self._view(history, user, f"Deleted all {deleted} entries."), False)

    @_errors
    def ui_export(self, request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> list[str]:
        """All of the user's data: a JSON file (with kept photos) and a CSV file."""
        history, user = self._on(request, profile)
        return history.export_files(user)

    @_errors
    def ui_compare(self, id_a: str | None, id_b: str | None, request: gr.Request = None,
                   profile: gr.OAuthProfile | None = None) -> tuple:
        """Verdict per score of two entries, and their heatmaps side by side when both photos were kept."""
        history, user = self._on(request, profile)
        if not id_a or not id_b or id_a == id_b:
            raise ValueError("pick two different entries to compare")
        text = verdicts_markdown(history.compare(user, id_a, id_b))
        pair = history.heatmaps(user, id_a, id_b)
        note = (f"\n\nHeatmaps: the {pair.model} model's Grad-CAM on each kept photo, older left."
                if pair.model else f"\n\nNo heatmaps: {pair.reason}.")
        return text + note, *pair.images


def entry_label(row: Mapping) -> str:
    """How an entry is named in the pickers: time, note, the start of its id."""
    note = f" · {row['note'][:30]}" if row["note"] else ""
    return f"{row['saved_at'][:16].replace('T', ' ')}{note} · {row['id'][:8]}"


def verdicts_markdown(comparison: Mapping) -> str:
    """A ``/compare`` answer as a Markdown table: per score its verdict, change, noise and reason."""
    head = ("**Comparable.**" if comparison["comparable"]
            else f"**Not comparable:** {comparison['reason']}")
    if comparison.get("note"):
        head += f" ({comparison['note']}.)"
    lines = [head, "", "| score | verdict | change | noise (±) | reason |", "|---|---|---|---|---|"]
    for name, v in comparison["verdicts"].items():
        change, noise = (f"{x:+.3f}" if math.isfinite(x) else "—" for x in (v["change"], v["noise"]))
        lines.append(f"| {name} | {v['verdict']} | {change} | {noise.lstrip('+')} | {v['reason']} |")
    return "\n".join(lines)


#: Columns of the history table (newest entry first).
TABLE_HEADERS = ["saved (UTC)", "note", "photo type", "tone", "quality flags", "photo kept", "id"]


def add_history_panel(demo: gr.Blocks, history: HistoryService | None, state, *, oauth: bool = False) -> None:
    """The "My history" accordion inside ``demo``: save the analysis in ``state`` (the page's analysed
    photo), the table, the trend plot, delete, export and compare; without sign-in only how to set it up."""
    on = HistoryHandlers(history, oauth=oauth)
    with gr.Accordion("My history", open=True, elem_id="history"):
        if history is None:
            gr.Markdown(NO_SIGN_IN_HELP, elem_id="history-status")
            return
        if oauth:
            gr.LoginButton()
        status = gr.Markdown(elem_id="history-status")
        with gr.Row():
            note = gr.Textbox(label="Note (optional)", placeholder="e.g. left forearm, after two weeks of cream",
                              scale=3)
            keep = gr.Checkbox(label="keep this photo (needed for heatmaps when comparing)", value=False)
            save = gr.Button("Save to my history", variant="primary", elem_id="history-save")
        table = gr.Dataframe(headers=TABLE_HEADERS, value=[], interactive=False, label="Saved analyses, newest first",
                             elem_id="history-table")
        plot = gr.Plot(label="Trend per score", format="png", elem_id="history-trends")
        with gr.Row():
            with gr.Column():
                pick_a = gr.Dropdown([], label="Compare: first entry")
                pick_b = gr.Dropdown([], label="Compare: second entry")
                compare_btn = gr.Button("Compare", elem_id="history-compare")
            with gr.Column():
                pick_delete = gr.Dropdown([], label="Entry to delete")
                delete_btn = gr.Button("Delete this entry", variant="stop")
                confirm_all = gr.Checkbox(label="yes, delete my whole history (cannot be undone)", value=False)
                delete_all_btn = gr.Button("Delete everything", variant="stop")
                export_btn = gr.Button("Export all my data (JSON and CSV)")
                export_files = gr.File(label="Your data", file_count="multiple", interactive=False)
        verdicts = gr.Markdown(elem_id="history-verdicts")
        with gr.Row():
            heat_a = gr.Image(label="Older entry: heatmap", type="pil", interactive=False,
                              elem_id="history-heatmap-older")
            heat_b = gr.Image(label="Newer entry: heatmap", type="pil", interactive=False,
                              elem_id="history-heatmap-newer")
    view = [status, table, plot, pick_delete, pick_a, pick_b]
    private = {"api_visibility": "private"}
    demo.load(on.ui_view, None, view, **private)
    save.click(on.ui_save, [state, note, keep], view, concurrency_id="model", **private)
    delete_btn.click(on.ui_delete, pick_delete, view, **private)
    delete_all_btn.click(on.ui_delete_all, confirm_all, [*view, confirm_all], **private)
    export_btn.click(on.ui_export, None, export_files, **private)
    compare_btn.click(on.ui_compare, [pick_a, pick_b], [verdicts, heat_a, heat_b], concurrency_id="model", **private)


def add_history_endpoints(history: HistoryService | None, image_input, *, oauth: bool = False) -> None:
    """Hidden components and the named endpoints, inside the caller's ``gr.Blocks``."""
    on = HistoryHandlers(history, oauth=oauth)
    with gr.Column(visible=False):
        note = gr.Textbox(label="note", value="")
        keep = gr.Checkbox(label="keep_photo", value=False)
        photo_type = gr.Textbox(label="photo_type", value="")
        entry_id = gr.Textbox(label="id", value="")
        id_a = gr.Textbox(label="id_a", value="")
        id_b = gr.Textbox(label="id_b", value="")
        out = gr.JSON(label="result")
        out_file = gr.File(label="export")
        buttons = [gr.Button() for _ in range(5)]
    buttons[0].click(on.api_history_save, [image_input, note, keep, photo_type], out, api_name="history_save",
                     api_description="image[, note, keep_photo, photo_type] → {id, saved_at} (signed-in users)",
                     concurrency_id="model")
    buttons[1].click(on.api_history, None, out, api_name="history",
                     api_description="→ {entries, trends}, newest first (signed-in users)")
    buttons[2].click(on.api_history_delete, entry_id, out, api_name="history_delete",
                     api_description='id or "all" → {deleted} (signed-in users)')
    buttons[3].click(on.api_history_export, None, out_file, api_name="history_export",
                     api_description="→ zip of history.json and history.csv (signed-in users)")
    buttons[4].click(on.api_compare, [id_a, id_b], out, api_name="compare",
                     api_description="id_a, id_b → {verdicts, comparable, reason} (signed-in users)")
