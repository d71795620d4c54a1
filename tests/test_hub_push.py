"""``--push_to_hub`` / ``skin.hub.push_run`` against a local stand-in for the Hub API (never the network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_push_run_uploads_merged_adapter_and_card(tmp_path):
    from skin.modeling import create_model, export_merged, prepare_finetune, save_adapter

    from tests.hub_standin import HubStandIn

    run = tmp_path / "run"
    model, processor = create_model("efficientnet_lite0", ["a", "b"], image_size=32)
    model, state = prepare_finetune(model, "lora", lora_r=2)
    export_merged(model, processor, str(run / "merged"))
    save_adapter(model, str(run / "adapter"), state)
    (run / "merged" / "README.md").write_text("---\nlicense: other\n---\n# card\nNot medical advice.\n")

    code = ("import sys; from skin.hub import push_run; "
            "print(push_run(sys.argv[1], 'someone/skinlens-test', token='hf_test', private=True))")
    with HubStandIn(tmp_path / "hub") as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_DISABLE_XET": "1"}
        res = subprocess.run([sys.executable, "-c", code, str(run)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:] + str(hub.requests)
    pushed = tmp_path / "hub" / "someone" / "skinlens-test"
    # the token given (train.py --hub_token) signs every request; --hub_private_repo reaches the creation
    assert hub.authorizations and set(hub.authorizations) == {"Bearer hf_test"}
    assert [c.get("visibility", "private" if c.get("private") else None) for c in hub.created] == ["private"]
    for name in ("config.json", "model.safetensors", "README.md"):
        assert (pushed / name).read_bytes() == (run / "merged" / name).read_bytes(), name
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (pushed / "adapter" / name).read_bytes() == (run / "adapter" / name).read_bytes(), name
