#!/usr/bin/env bash
# Installs what the kit needs on a fresh Debian machine (run as root): Bengali fonts from Debian when
# missing, then the pinned Python requirements and the kit itself (editable). Safe to run again: on a machine
# already set up it touches nothing (no apt-get, no pip) and takes a second or two.
set -euo pipefail
cd "$(dirname "$0")/.."

# Fonts the kit will find (bengali_kit/synthetic/fonts.py looks in these folders for .ttf/.otf files with
# "beng" in their path): when there are some, the system is left alone; fontconfig is not needed to tell.
bengali_fonts_present() {
  local dir
  for dir in /usr/share/fonts /usr/local/share/fonts "${HOME:-}/.local/share/fonts" "${HOME:-}/.fonts"; do
    [ -d "$dir" ] || continue
    if [ -n "$(find "$dir" -ipath '*beng*' \( -iname '*.ttf' -o -iname '*.otf' \) -print -quit 2>/dev/null)" ]; then
      return 0
    fi
  done
  return 1
}

FONT_PACKAGES="fontconfig fonts-beng-extra fonts-lohit-beng-bengali fonts-noto-core"
if bengali_fonts_present; then
  echo "== Bengali fonts already installed: skipping apt-get"
elif [ "$(id -u)" != 0 ]; then
  # apt-get would fail on permissions half-way; say what to run instead
  echo "== no Bengali fonts found; as root run: apt-get install $FONT_PACKAGES" >&2
  exit 1
else
  echo "== installing Bengali fonts (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086 # a list of package names
  apt-get install -y -qq --no-install-recommends $FONT_PACKAGES >/dev/null
fi

PY=${PYTHON:-python3}
# Already set up (every pin of requirements.txt installed, and this checkout importable as an editable install
# with its version)? Then skip pip entirely: a second run costs a second, not a minute of resolving.
if "$PY" -I - <<'PY'
import importlib.metadata as md, pathlib, re, sys
for line in pathlib.Path("requirements.txt").read_text().splitlines():
    pin = line.split("#")[0].strip()
    if not pin:
        continue
    name, _, want = pin.partition("==")
    try:
        have = md.version(name.strip())
    except md.PackageNotFoundError:
        sys.exit(f"== {name.strip()} is not installed")
    if have.split("+")[0] != want.strip():  # 2.13.0+cpu satisfies ==2.13.0
        sys.exit(f"== {name.strip()} {have} installed, {want.strip()} pinned")
import bengali_kit
src = pathlib.Path(bengali_kit.__file__).resolve().parent
if src != pathlib.Path("bengali_kit").resolve():
    sys.exit(f"== bengali_kit is imported from {src}, not this checkout")
init = pathlib.Path("bengali_kit/__init__.py").read_text()
if md.version("bengali_kit") != re.search(r'__version__ = "([^"]+)"', init).group(1):
    sys.exit("== the installed bengali_kit metadata is of another version")
PY
then
  echo "== Python requirements and the kit already installed: skipping pip"
else
  echo "== installing Python requirements"
  # torch first and alone: 2.13.0 resolves to the CPU wheel on the dev/CI machines, and nothing after it
  # may pull another torch build.
  "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore torch==2.13.0
  "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore -r requirements.txt
  "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps --no-build-isolation -e .
fi
"$PY" - <<'PY'
import PIL.features, torch, efficientnet_pytorch, cv2, pyarrow  # noqa: F401
assert PIL.features.check("raqm"), "Pillow lacks raqm: Bengali text would not be shaped"
print(f"== ready: torch {torch.__version__}, opencv {cv2.__version__}, pyarrow {pyarrow.__version__}")
PY
