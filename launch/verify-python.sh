#!/usr/bin/env bash
# Makes .venv-verify, a Python virtual environment with the packages of tools/verify-requirements.txt
# (onnx, onnxruntime: the ONNX export's checks; Pillow: prepare images' fixtures and references) and, without their dependencies,
# tools/verify-requirements-nodeps.txt (torchvision: the views' checks; its wheel asks for a torch
# newer than Debian's, whose functional ops it runs on), on top of /usr/bin/python3's own packages
# (--system-site-packages: Debian's torch and numpy stay visible). Idempotent and quick when it is
# there: a stamp holds the requirements it was made from. Without network (or pip) it says why and
# exits 0: the tests that need it then skip with that reason. Prints the venv's python last.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=.venv-verify requirements=tools/verify-requirements.txt nodeps=tools/verify-requirements-nodeps.txt
stamp=.venv-verify/requirements.stamp
python=$PWD/$venv/bin/python

if [[ -x $python ]] && cat "$requirements" "$nodeps" | cmp -s - "$stamp"; then
    echo "$python"
    exit 0
fi
echo "verify-python: making $venv (tools/verify-requirements.txt)" >&2
rm -rf "$venv"
# Debian's python3 makes venvs only with python3-venv (ensurepip); install it when we may.
if ! /usr/bin/python3 -c "import ensurepip" 2>/dev/null && [[ $(id -u) -eq 0 ]]; then
    echo "verify-python: installing python3-venv" >&2
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv; } >&2
fi
# The PyTorch references run on Debian's torch 1.13 (CPU) under /usr/bin/python3 (ExportTests,
# ResNetExportTests, ViTExportTests directly; the BERT and views checks through this venv). Install
# it when we may; without it, pip must not resolve sentence-transformers' torch requirement from PyPI
# (a CUDA build of a newer torch, gigabytes, minutes of CI): it is then installed without
# dependencies and the checks that need torch skip, saying so.
if ! /usr/bin/python3 -c "import torch, numpy" 2>/dev/null && [[ $(id -u) -eq 0 ]]; then
    echo "verify-python: installing python3-torch (Debian's torch 1.13, CPU)" >&2
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-torch python3-numpy; } >&2
fi
if ! /usr/bin/python3 -m venv --system-site-packages "$venv" >&2; then
    echo "verify-python: /usr/bin/python3 -m venv failed (Debian: apt-get install python3-venv); the Python-verified tests will skip" >&2
    exit 0
fi
# A short timeout and one retry: without network this fails in seconds, not minutes.
pip=("$python" -m pip install --disable-pip-version-check --no-input --quiet --timeout 15 --retries 1)
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
    echo "verify-python: /usr/bin/python3 has no torch (Debian: apt-get install python3-torch); sentence-transformers goes in without its dependencies and the torch checks skip" >&2
    grep -v '^sentence-transformers' "$requirements" > "$venv/requirements-without-torch.txt"
    grep '^sentence-transformers' "$requirements" >> "$venv/nodeps.txt"
    requirements=$venv/requirements-without-torch.txt
fi
cat "$nodeps" >> "$venv/nodeps.txt"
if "${pip[@]}" -r "$requirements" >&2 && "${pip[@]}" --no-deps -r "$venv/nodeps.txt" >&2; then
    cat tools/verify-requirements.txt "$nodeps" > "$stamp"
else
    echo "verify-python: pip could not install $requirements and $nodeps (no network?); the Python-verified tests will skip" >&2
fi
echo "$python"
