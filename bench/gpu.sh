#!/usr/bin/env bash
# The GPU bench (issue 14) in one command: bash bench/gpu.sh [--json] [--dry-run] [--repeats N] [--live-seconds S]
#
# Runs bench/gpu.py (what it measures: its docstring) on a GPU host that has torch with CUDA and no
# internet. About 2-3 minutes on an H100/H200, one table at the end (with --json, one JSON object as
# the last line). --dry-run: tiny models on the CPU, under a minute, anywhere.
#
# Python: $PYTHON if set, else .venv/bin/python if it exists, else python3. When that Python lacks
# what Driftwave's engine imports besides torch, the wheels in bench/wheels/ (git-ignored; another
# folder: GPU_BENCH_WHEELS=DIR) are installed with pip, offline, into a throw-away virtual
# environment in a temporary folder that sees the host's packages (torch with its CUDA stays the
# host's): pip installs only what is missing or too old there, and nothing of the host is changed.
# The folder is removed at the end.
#
# Preparing bench/wheels/ on a machine with internet (not torch: the GPU host has it). The wheels
# must match the GPU host's Python (3.12 here: change --python-version to its `python3 -V`):
#
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d bench/wheels \
#     diffusers==0.42.1 transformers==5.24.0 huggingface_hub==2.4.0 tokenizers==0.23.3 safetensors==0.8.0 \
#     regex==2026.11.19 requests==2.34.2 urllib3==2.8.0 idna==3.20 certifi==2026.10.19.post1 \
#     charset_normalizer==3.5.3 pyyaml==6.0.4 packaging==26.4 tqdm==4.70.1 filelock==4.3.1 fsspec==2026.9.0 \
#     hf_xet==1.8.0 httpx2==2.16.2 httpcore2==2.16.2 h11==0.16.0 anyio==4.16.0 truststore==0.10.5 \
#     lazy_importer==0.1.0 typer==0.29.2 click==8.5.1 rich==15.0.0 markdown_it_py==4.3.0 mdurl==0.1.2 \
#     pygments==2.21.0 shellingham==1.5.4 annotated_doc==0.0.7 importlib_metadata==10.2.0 zipp==4.1.2 \
#     pydantic==2.14.4 pydantic_core==2.50.5 annotated_types==0.8.0 typing_inspection==0.4.5 \
#     typing_extensions==4.16.0 tomlkit==0.15.2 numexpr==2.14.2 soundfile==0.14.0 cffi==2.1.1 \
#     pycparser==3.12 pillow==13.0.0
#
# That is all the bench imports besides torch (diffusers, transformers and their needs; pydantic,
# tomlkit, numexpr, soundfile and Pillow for the engine), 44 MiB, but for numpy, scipy and
# opencv-python-headless (16 + 35 + 61 MB: more than can travel), which the GPU host must have (the
# workplace's H200 image has all three; add numpy==2.5.5 to the list for a host without it). Where
# the host has a package already (transformers, say), its version is used when it meets Driftwave's
# requirement: there a few wheels would do (diffusers, pydantic and its four, tomlkit, numexpr,
# soundfile, cffi), but the whole set serves a host that has only torch.
#
# The wheels travel with the working tree: with the device tool, name the folder in carry, e.g.
#   run(command="bash bench/gpu.sh --json", carry=["bench/wheels"], timeout_s=540)
# (the tree and the carried paths together must stay under 64 MiB).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
wheels="${GPU_BENCH_WHEELS:-bench/wheels}"

if [[ -n "${PYTHON:-}" ]]; then
  python="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
  python=.venv/bin/python
else
  python=python3
fi

# Driftwave's requirements (pyproject.toml) that the bench's imports need, besides torch
requirements=(
  "diffusers>=0.42" "transformers>=5.0" "numpy>=1.26" "pillow>=10" "pydantic>=2.5" "tomlkit>=0.12"
  "numexpr>=2.8.5" "soundfile>=0.12" "scipy>=1.11" "opencv-python-headless>=4.8"
)

# the requirements this Python does not meet: missing, or older than Driftwave needs
unmet="$("$python" - "${requirements[@]}" <<'PY'
import importlib.metadata
import importlib.util
import sys

try:
    from packaging.requirements import Requirement
except ImportError:
    try:
        from pip._vendor.packaging.requirements import Requirement
    except ImportError:
        Requirement = None
if importlib.util.find_spec("torch") is None:
    sys.exit(3)
unmet = []
for text in sys.argv[1:]:
    name = text.split(">")[0]
    try:
        found = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        unmet.append(text)
        continue
    if Requirement is not None and not Requirement(text).specifier.contains(found, prereleases=True):
        unmet.append(text)
print(" ".join(unmet))
PY
)" || {
  echo "bench/gpu.sh: $python has no torch; run it with the GPU host's Python (PYTHON=/path/to/python)" >&2
  exit 2
}

if [[ -n "$unmet" ]]; then
  echo "bench/gpu.sh: $python lacks $unmet; installing them from $wheels into a temporary environment" >&2
  if ! compgen -G "$wheels/*.whl" >/dev/null; then
    echo "bench/gpu.sh: $wheels holds no wheels: see the top of bench/gpu.sh to prepare them" >&2
    exit 2
  fi
  if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "bench/gpu.sh: $python has no pip to install the wheels with" >&2
    exit 2
  fi
  tmp="$(mktemp -d -t driftwave-gpu-bench.XXXXXX)"
  trap 'rm -rf "$tmp"' EXIT
  "$python" -m venv --without-pip "$tmp/venv"
  # the host's package folders, after the environment's own: torch and all that is there stay the host's
  site="$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  "$python" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))' \
    >"$site/_host_packages.pth"
  # the host's pip, run by the environment's Python, installs into the environment alone: a host
  # package it must upgrade is shadowed, not removed ("not uninstalling ... outside environment");
  # pip's settings on the host (config files, PIP_* variables) are left out
  PIP_CONFIG_FILE=/dev/null "$tmp/venv/bin/python" -m pip --isolated install --quiet --no-index \
    --find-links "$wheels" --only-binary=:all: --no-cache-dir --no-compile --disable-pip-version-check \
    "${requirements[@]}"
  python="$tmp/venv/bin/python"
fi

"$python" bench/gpu.py "$@"
