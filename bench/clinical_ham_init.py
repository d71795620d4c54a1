"""A clinical-model starting point with skin-domain weights: Lite0 carrying the dermoscopy model's backbone.

The embedded ``default:condition`` model is Lite0 fine-tuned on HAM10000
dermoscopy. This script takes its backbone weights (its LoRA merged in; the
classifier left out), puts them into a fresh Lite0 classifier for DermNet's
``clinical`` grouping at 224 px (the classifier randomly initialised, as
``create_model`` does), and saves it as a folder that ``train.py
--model_name_or_path`` loads. The question it answers: do dermoscopy features
help clinical photos more than ImageNet's? (models/README, runs not embedded.)

    python bench/clinical_ham_init.py --out DIR
    python train.py --task condition_dermnet --model_name_or_path DIR ...  # the embedded recipe, no --image_size
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the initial model to (outside the repository)")
    parser.add_argument("--from-model", default="default:condition")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args(argv)

    from dataset_scripts.dermnet_groupings import GROUPINGS
    from skin.hub import load_classifier
    from skin.modeling import create_model

    source, _ = load_classifier(args.from_model)
    backbone = {k: v for k, v in source.state_dict().items() if "classifier" not in k}
    model, processor = create_model("efficientnet_lite0", list(GROUPINGS["clinical"]), image_size=args.image_size)
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    if unexpected or any("classifier" not in k for k in missing):
        raise SystemExit(f"{args.from_model} is not a Lite0: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    print(f"wrote {args.out}: {args.from_model}'s backbone, a new {len(GROUPINGS['clinical'])}-class classifier")
    return 0


if __name__ == "__main__":
    sys.exit(main())
