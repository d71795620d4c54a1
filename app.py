"""SkinLens — the Gradio Space.

A thin UI over :class:`skin.service.SkinLensService` (all logic lives there);
the Markdown it shows is drawn by :mod:`app_markdown`.

    python app.py                       # http://127.0.0.1:7860 (GRADIO_SERVER_PORT / GRADIO_SERVER_NAME)
    SKINLENS_CONFIG=my.yaml python app.py

Named API endpoints (``gradio_client``): ``/predict`` (image file → JSON),
``/explain`` (image, task, method, target → heatmap + JSON) and ``/fairness``
(task, tone bucket → card markdown + JSON); with sign-in (``SKINLENS_USERS``), the
history endpoints of :mod:`app_history`. See README.md, section "API".

Privacy: no analytics (``analytics_enabled=False``), no share link, no run
history (a signed-in user's own history only on request, :mod:`app_history`), no
downloads (models are read from local files unless
``HF_HUB_OFFLINE=0``, see :mod:`skin.service.config`); the uploaded file is
handed to the service undecoded (it validates the raw bytes) and Gradio's
temporary copies of uploads and heatmaps are deleted within two minutes
(``delete_cache``); the decoded photo lives only in the request and, for the
Explain button, in the browser session's state (expires after 10 minutes).
"""

from __future__ import annotations

import os
import threading

import gradio as gr

from app_history import add_history_endpoints, add_history_panel, auth_from_env, oauth_enabled, user_errors
from app_markdown import examples_markdown, fairness_markdown, notice_markdown, predictions_markdown, quality_markdown
from skin.phototype import AUTO, PHOTO_TYPE_NAMES, PHOTO_TYPES
from skin.service import DISCLAIMER, SkinLensService
from skin.service.history import HistoryService
from skin.tasks import TaskKind, get_task

#: Gradio's upload cap: far above the service's own limit (``max_upload_mb``),
#: so that files between the two get the service's clear message.
GRADIO_MAX_FILE_SIZE = "100mb"
#: (every, older than) seconds: Gradio deletes its cached uploads and outputs.
DELETE_CACHE = (60, 60)
PREDICTED = "(the predicted class)"
#: How the picker names that first choice for an age model, whose answer is its estimate, not one class.
ESTIMATE = "(the age estimate)"
#: Requests the model runs at once (Gradio concurrency of the model events).
CONCURRENCY = 2


def torch_threads() -> int:
    """Intra-op threads per request: ``SKINLENS_TORCH_THREADS``, else CPUs / concurrency (≥ 1).

    Concurrent requests each running torch's default (one thread per core)
    oversubscribe a small Space's cores and slow every request down
    (bench/README.md).
    """
    value = os.environ.get("SKINLENS_TORCH_THREADS")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"SKINLENS_TORCH_THREADS must be a positive integer, got {value!r}")
        return int(value)
    return max(1, (os.cpu_count() or 1) // CONCURRENCY)


class PhotoInput(gr.Image):
    """``gr.Image`` that hands the handler the uploaded *file*, undecoded.

    ``gr.Image(type="filepath")`` still opens the file with Pillow before the
    handler runs, so a broken or hostile upload fails inside Gradio with a
    generic error. This keeps Gradio's image widget (``is_template``: same
    front-end) but returns the raw upload path, so :mod:`skin.uploads`
    validates the bytes and answers with a message that names the problem.
    Webcam captures arriving as ``data:`` URLs are written to a file by Gradio.
    """

    is_template = True

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            return super().preprocess(payload)
        return payload.path


#: ValueErrors (bad upload, missing model, bad argument) → ``gr.Error`` with the message.
_user_errors = user_errors("SkinLens")


def models_that_read(result: dict) -> list[str]:
    """The models that read the photo (answered, or listed their guesses under the threshold), answered
    first: not those the photo type routed away, nor a face model that found no face."""
    read = [key for key, t in result["tasks"].items() if t.get("top_k")]
    return sorted(read, key=lambda key: bool(result["tasks"][key].get("abstained")))


def explained_model(result: dict, current: str | None) -> str | None:
    """The model the Explain panel should show after Analyse: the one already chosen if it read the photo,
    else the first that answered, else the first that listed its guesses under the threshold, else no
    change."""
    read = models_that_read(result)
    return current if current in read or not read else read[0]


#: Between the fairness cards of the models that read the photo and the others' (shown for reference).
OTHER_CARDS_HEADING = ("### The other models\nThey did not read your photo (another photo type, or no face "
                       "found): their cards are here for reference, not about this answer.")


def fairness_cards(result: dict, keys: list[str], card) -> str:
    """Every model's fairness card (``card(key)`` → markdown), those of the models that read the photo
    first, so the card beside an answer is that answer's model; the others after a heading saying so.
    When no model read it (a picture out of scope), all in configured order."""
    read = models_that_read(result)
    others = [key for key in keys if key not in read]
    cards = [card(key) for key in read]
    if read and others:
        cards.append(OTHER_CARDS_HEADING)
    cards += [card(key) for key in others]
    return "\n\n---\n\n".join(cards)


class Handlers:
    """What each event does, on one service: the named API endpoints (``api_*``) and the page's events
    (``ui_*``; Gradio names an event after its function, so the two sets of names must not meet)."""

    def __init__(self, service: SkinLensService):
        self.service = service
        self.keys = list(service.config.models)

    @_user_errors
    def api_predict(self, image: str, photo_type: str = "") -> dict:
        """Predictions for every configured task, with the photo type, the photo-quality check and the
        skin-tone bucket; ``photo_type`` (optional) forces the type instead of detecting it."""
        if not image:
            raise ValueError("no image: pass an image file, e.g. handle_file('photo.jpg')")
        return self.service.predict(image, photo_type or None)

    @_user_errors
    def api_explain(self, image: str, task: str, method: str, target: str = "", photo_type: str = ""):
        """Heatmap over the model's input and a JSON summary (method, target, faithfulness); ``photo_type``
        (optional) as for ``/predict``: a model that does not read the photo's type is refused."""
        if not image:
            raise ValueError("no image: pass an image file, e.g. handle_file('photo.jpg')")
        return self.service.explain(image, task, method or "gradcam", target or None, photo_type or None)

    @_user_errors
    def api_fairness(self, task: str, tone_bucket: str = ""):
        """The fairness card of a task's model: markdown and JSON."""
        card = self.service.fairness(task, tone_bucket or None)
        return fairness_markdown(card), card

    @_user_errors
    def ui_analyse(self, path, photo_type, state, explain_model=None):
        """Analyse: predictions, quality, every model's fairness card; the decoded photo kept for Explain."""
        if not path:
            raise ValueError("no photo yet: upload one or take one with the webcam, then press Analyse")
        if state and state.get("path") == path:
            loaded = state["loaded"]
        else:
            loaded = self.service.load_upload(path)
        result = self.service.predict(loaded, photo_type)
        bucket = (result.get("tone") or {}).get("bucket")
        cards = fairness_cards(result, self.keys, lambda key: fairness_markdown(self.service.fairness(key, bucket)))
        return ({"path": path, "loaded": loaded, "bucket": bucket, "photo_type": photo_type},
                predictions_markdown(result), quality_markdown(result), cards, result,
                gr.Dropdown(value=explained_model(result, explain_model)))

    @_user_errors
    def ui_explain(self, state, task, method, target):
        """Explain: the heatmap of the analysed photo for the chosen model, method and class."""
        if not state:
            raise ValueError("analyse a photo first, then ask for an explanation")
        target = None if target in (None, "", PREDICTED) else target
        return self.service.explain(state["loaded"], task, method, target, state.get("photo_type"))

    def ui_targets(self, task, method):
        """For the chosen model: its classes for the "Explain which class" picker, and the method picker
        with the faithfulness measured on that model."""
        try:
            classes = self.service.label_choices(task)
        except ValueError:
            classes = []
        spec = self.service.config.models.get(task)  # what "" explains for this model: its answer
        answer = ESTIMATE if spec is not None and get_task(spec.task).kind is TaskKind.AGE else PREDICTED
        return (gr.Dropdown(choices=[(answer, PREDICTED), *classes], value=PREDICTED),
                gr.Radio(choices=self.service.method_choices(task), value=method))


def build_demo(service: SkinLensService, history: HistoryService | None = None, *, oauth: bool = False) -> gr.Blocks:
    """The page (photo and answers, explanation, fairness card, "My history") and the hidden components of
    the API (the history answers "sign in" when ``history`` is ``None``; ``oauth``: Hugging Face sign-in,
    see :mod:`app_history`)."""
    on = Handlers(service)
    keys = on.keys
    config = service.config
    notice = notice_markdown(service.status(), service.gate())
    with gr.Blocks(title="SkinLens — not medical advice", delete_cache=DELETE_CACHE, analytics_enabled=False) as demo:
        gr.Markdown(f"# SkinLens\n\n> ⚠️ {DISCLAIMER}", elem_id="disclaimer")
        gr.Markdown(notice or "", visible=bool(notice), elem_id="model-notice")
        state = gr.State(None, time_to_live=600)
        with gr.Row():
            with gr.Column(scale=1):
                photo = PhotoInput(sources=["upload", "webcam"], type="filepath", label="Your photo",
                                   image_mode=None, elem_id="photo")
                analyse = gr.Button("Analyse", variant="primary", elem_id="analyse")
                photo_type = gr.Dropdown([("Detect it for me", AUTO), *((PHOTO_TYPE_NAMES[t], t) for t in PHOTO_TYPES)],
                                         value=AUTO, label="Photo type (detected automatically; not right? choose)",
                                         elem_id="photo-type")
                gr.Markdown("A close-up of the skin spot, in daylight, in focus — or a face, looking at the "
                            "camera, for the age estimate. Photos are not stored"
                            + (" (unless you save one to My history with \"keep this photo\")." if history else "."))
                examples = config.available_examples()
                if examples:
                    gr.Examples([[e.path] for e in examples], inputs=photo, label="Example photos",
                                example_labels=[e.caption for e in examples], cache_examples=False)
                gr.Markdown(examples_markdown(config.examples, examples), elem_id="examples-licences")
            with gr.Column(scale=1):
                predictions = gr.Markdown(elem_id="predictions")
                quality = gr.Markdown(elem_id="quality")
        with gr.Accordion("Why? Explanation heatmap", open=True):
            with gr.Row():
                with gr.Column(scale=1):
                    exp_task = gr.Dropdown([(config.models[k].title, k) for k in keys], value=keys[0],
                                           label="Model", elem_id="explain-model")
                    exp_method = gr.Radio(service.method_choices(), value="gradcam",
                                          label="Method (measured faithfulness: insertion − deletion AUC, "
                                                "higher = the map points at what really drives the score)")
                    exp_target = gr.Dropdown([PREDICTED], value=PREDICTED, label="Explain which class",
                                             allow_custom_value=False)
                    explain_btn = gr.Button("Explain", elem_id="explain")
                with gr.Column(scale=1):
                    heatmap = gr.Image(label="Heatmap over what the model saw", type="pil", elem_id="heatmap",
                                       interactive=False)
                    exp_json = gr.JSON(label="Explanation details", elem_id="explain-details")
        with gr.Accordion("Fairness card: how well does it work for your skin tone?", open=True):
            fairness_md = gr.Markdown(elem_id="fairness")
        add_history_panel(demo, history, state, oauth=oauth)
        with gr.Accordion("All results as JSON", open=False):
            result_json = gr.JSON(label="/predict result")
        gr.Markdown(
            f"Model card: [{config.model_card_url}]({config.model_card_url}) · data licences are "
            "listed on each fairness card · "
            "API: see *Use via API* below, endpoints `/predict`, `/explain`, `/fairness`."
        )

        # hidden components that carry the named API endpoints
        with gr.Column(visible=False):
            api_image = PhotoInput(type="filepath", image_mode=None, label="image")
            api_photo_type = gr.Textbox(label="photo_type", value="")
            api_task = gr.Textbox(label="task", value=keys[0])
            api_method = gr.Textbox(label="method", value="gradcam")
            api_target = gr.Textbox(label="target", value="")
            api_bucket = gr.Textbox(label="tone_bucket", value="")
            api_json = gr.JSON(label="result")
            api_heatmap = gr.Image(type="pil", label="heatmap")
            api_markdown = gr.Markdown(label="card")
            api_predict_btn = gr.Button()
            api_explain_btn = gr.Button()
            api_fairness_btn = gr.Button()

        analyse.click(on.ui_analyse, [photo, photo_type, state, exp_task],
                      [state, predictions, quality, fairness_md, result_json, exp_task],
                      api_visibility="private", concurrency_id="model", concurrency_limit=CONCURRENCY)
        exp_task.change(on.ui_targets, [exp_task, exp_method], [exp_target, exp_method], api_visibility="private")
        demo.load(on.ui_targets, [exp_task, exp_method], [exp_target, exp_method], api_visibility="private")
        explain_btn.click(on.ui_explain, [state, exp_task, exp_method, exp_target], [heatmap, exp_json],
                          api_visibility="private", concurrency_id="model")
        api_predict_btn.click(on.api_predict, [api_image, api_photo_type], api_json, api_name="predict",
                              api_description="image file[, photo_type] → photo type, predictions per task, "
                                              "quality check, tone bucket",
                              concurrency_id="model")
        api_explain_btn.click(on.api_explain, [api_image, api_task, api_method, api_target, api_photo_type],
                              [api_heatmap, api_json], api_name="explain",
                              api_description="image, task, method[, target, photo_type] → heatmap, JSON",
                              concurrency_id="model")
        api_fairness_btn.click(on.api_fairness, [api_task, api_bucket], [api_markdown, api_json], api_name="fairness",
                               api_description="task[, tone bucket] → fairness card (markdown, JSON)")
        add_history_endpoints(history, api_image, oauth=oauth)
    return demo


#: The page's own style. On a phone the fairness tables' columns were squeezed until words broke letter by
#: letter ("bal/an/ce/d"): tables scroll sideways instead, and words break only between words.
CSS = """
#predictions table, #fairness table, #history-verdicts table { display: block; overflow-x: auto; max-width: 100%; }
#predictions th, #predictions td, #fairness th, #fairness td, #history-verdicts th, #history-verdicts td {
  word-break: normal; overflow-wrap: normal; hyphens: manual; min-width: 4.5em;
}
"""


def launch_kwargs(service: SkinLensService) -> dict:
    """How the app is served: never shared, no run history, bounded uploads.

    Host and port come from ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``,
    read by Gradio itself.
    """
    return {"share": False, "max_file_size": GRADIO_MAX_FILE_SIZE, "run_history": False, "ssr_mode": False, "css": CSS,
            "footer_links": ["api"],
            # the example photos live outside the app folder: allow exactly those files, nothing around them
            "allowed_paths": [e.path for e in service.config.available_examples()]}


def warm_up(service: SkinLensService) -> None:
    """Load and run every model once (torch, timm, peft, the face detector) before the first visitor.

    A missing model is reported by the page's notice and by predict, not here.
    """
    import torch

    torch.set_num_threads(torch_threads())
    service.warm_up()


service = SkinLensService()
if __name__ == "__main__":
    # the models load while the page is built and the server starts: the first request needs them
    threading.Thread(target=warm_up, args=(service,), name="warm-up", daemon=True).start()
#: Sign-in: Hugging Face OAuth on a Space that enables it, else ``SKINLENS_USERS`` (neither: no history).
OAUTH = oauth_enabled()
AUTH = auth_from_env()
demo = build_demo(service, HistoryService(service) if AUTH or OAUTH else None, oauth=OAUTH)

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=CONCURRENCY).launch(**launch_kwargs(service), auth=AUTH)
