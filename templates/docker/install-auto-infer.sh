#!/usr/bin/env bash
# Put auto-infer itself into an image: the tool (a few MB of Python) and its boot hook. SGLang,
# torch and the other engine wheels are NOT installed here: auto-infer installs them at run time,
# into the workspace, from the warmed caches.
#
# Usage (a Dockerfile RUN, or an infer-dev stage-2 on-build script; see Dockerfile.snippet):
#   install-auto-infer.sh SOURCE [PREFIX]
#     SOURCE  the auto-infer source folder (a checkout of this repository)
#     PREFIX  where the tool's own virtual environment goes (default /opt/auto-infer)
# Result:
#   PREFIX/venv                         the tool and its Python dependencies (pyproject.toml)
#   PREFIX/hooks/auto-infer-boot.sh     the entry hook (templates/hooks/auto-infer-boot.sh)
#   ${BIN_DIR:-/usr/local/bin}/auto-infer       a link to PREFIX/venv/bin/auto-infer
#   ${BIN_DIR:-/usr/local/bin}/auto-infer-boot  a link to the hook (to run it by hand)
# Needs: python3 >= 3.10 with the venv module (Debian/Ubuntu: apt-get install -y python3-venv) and
# a package index at build time. For an image build without network, give pip a wheelhouse:
#   PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels install-auto-infer.sh SOURCE
set -euo pipefail

src="${1:?usage: install-auto-infer.sh SOURCE [PREFIX]}"
prefix="${2:-/opt/auto-infer}"
bin_dir="${BIN_DIR:-/usr/local/bin}"
py="${PYTHON:-python3}"

die() { echo "install-auto-infer: $*" >&2; exit 1; }

[[ -f "$src/pyproject.toml" && -f "$src/templates/hooks/auto-infer-boot.sh" ]] \
  || die "$src is not an auto-infer source folder (no pyproject.toml / templates/hooks/auto-infer-boot.sh)"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "$py is older than Python 3.10 (auto-infer needs >= 3.10)"
"$py" -m venv "$prefix/venv" \
  || die "'$py -m venv' failed: install the venv module (apt-get install -y python3-venv)"
"$prefix/venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check -q "$src"
install -D -m 0755 "$src/templates/hooks/auto-infer-boot.sh" "$prefix/hooks/auto-infer-boot.sh"
mkdir -p "$bin_dir"
ln -sf "$prefix/venv/bin/auto-infer" "$bin_dir/auto-infer"
ln -sf "$prefix/hooks/auto-infer-boot.sh" "$bin_dir/auto-infer-boot"
echo "install-auto-infer: $("$bin_dir/auto-infer" --version) in $prefix; hook $prefix/hooks/auto-infer-boot.sh"
