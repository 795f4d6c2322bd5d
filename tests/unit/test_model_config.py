"""What a model directory's files say (arrwdb.embed.st_config), and ARRWDB_MODELS' parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arrwdb.config import Settings
from arrwdb.embed.st_config import SentenceSpec, read_sentence_spec

_MODULE = "sentence_transformers.models."


def _directory(path: Path, modules: list[str] | None, pooling: dict | None = None, **files: dict) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    if modules is not None:
        entries = [{"type": _MODULE + m, "path": "1_Pooling" if m == "Pooling" else ""} for m in modules]
        (path / "modules.json").write_text(json.dumps(entries))
    if pooling is not None:
        (path / "1_Pooling").mkdir()
        (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    for name, content in files.items():
        (path / f"{name}.json").write_text(json.dumps(content))
    return path


def test_a_sentence_transformers_directory(tmp_path: Path) -> None:
    path = _directory(
        tmp_path / "bge",
        ["Transformer", "Pooling", "Normalize"],
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False},
        sentence_bert_config={"max_seq_length": 256},
    )
    assert read_sentence_spec(path) == SentenceSpec(window=256, pooling="cls", normalize=True)


def test_a_plain_hugging_face_directory_is_mean_pooled_and_not_normalised(tmp_path: Path) -> None:
    path = _directory(tmp_path / "plain", None, tokenizer_config={"model_max_length": 128})
    assert read_sentence_spec(path) == SentenceSpec(window=128, pooling="mean", normalize=False)
    unbounded = _directory(tmp_path / "unbounded", None, tokenizer_config={"model_max_length": 10**30})
    assert read_sentence_spec(unbounded).window == 512  # the model's positions


@pytest.mark.parametrize(
    ("modules", "pooling", "error"),
    [
        (["Transformer", "Pooling", "Dense"], {"pooling_mode_mean_tokens": True}, "Dense"),
        (["Transformer", "Pooling"], {"pooling_mode_lasttoken": True}, "lasttoken"),
        (["Transformer", "Pooling"], {"pooling_mode_cls_token": True, "pooling_mode_max_tokens": True}, "exactly one"),
        (["Transformer", "Pooling"], {}, "exactly one"),
    ],
)
def test_what_cannot_be_served_is_refused_at_load(
    tmp_path: Path, modules: list[str], pooling: dict, error: str
) -> None:
    path = _directory(tmp_path / "m", modules, pooling)
    with pytest.raises(ValueError, match=error):
        read_sentence_spec(path)


def test_models_setting(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, models=" bge=/m/bge , BAAI/bge-small-en=~/models/b ,")
    assert settings.model_paths() == {"bge": Path("/m/bge"), "BAAI/bge-small-en": Path("~/models/b").expanduser()}
    assert Settings(data_dir=tmp_path).model_paths() == {}
    for bad, message in (("bge", "name=PATH"), ("=/x", "name=PATH"), ("a b=/x", "name=PATH"), ("a=/x,a=/y", "twice")):
        with pytest.raises(ValueError, match=message):
            Settings(data_dir=tmp_path, models=bad).model_paths()
