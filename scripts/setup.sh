#!/usr/bin/env bash
# Installs what the kit needs on a fresh Debian machine (run as root): Bengali fonts from Debian when
# missing, then the pinned Python requirements and the kit itself (editable). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! fc-list :lang=bn 2>/dev/null | grep -qiE "lohit|noto|akaash|ani|mukti|likhan"; then
  echo "== installing Bengali fonts (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends fontconfig fonts-beng-extra fonts-lohit-beng-bengali fonts-noto-core >/dev/null
fi

PY=${PYTHON:-python3}
echo "== installing Python requirements"
# torch first and alone: 2.13.0 resolves to the CPU wheel on the dev/CI machines, and nothing after it
# may pull another torch build.
"$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore torch==2.13.0
"$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore -r requirements.txt
"$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps --no-build-isolation -e .
"$PY" - <<'PY'
import PIL.features, torch, efficientnet_pytorch, cv2, pyarrow  # noqa: F401
assert PIL.features.check("raqm"), "Pillow lacks raqm: Bengali text would not be shaped"
print(f"== ready: torch {torch.__version__}, opencv {cv2.__version__}, pyarrow {pyarrow.__version__}")
PY
