#!/usr/bin/env bash
# Fill a folder with the real SGLang wheels of tests/data/realwheels.txt (idempotent), for the
# tests marked `realwheels` and the bench's "real wheels" case:
#
#   .ci/setup-realwheels.sh [DIR]          (default /opt/auto-infer-ci/realwheels)
#   AUTO_INFER_REALWHEELS_DIR=DIR pytest -m realwheels
#
# Each file comes from a local store when one has it with the pinned sha256 (hard-linked, else
# copied), else it is downloaded by its exact PyPI URL (`pip download --no-deps`, so pip's proxy
# and index settings apply) and its sha256 checked. A stamp (the list's own sha256) marks a
# complete folder: the next run checks names and sizes only and is done in a second.
set -euo pipefail

DIR="${1:-/opt/auto-infer-ci/realwheels}"
LIST="$(cd "$(dirname "$0")/.." && pwd)/tests/data/realwheels.txt"
STORES=(${REALWHEELS_STORES:-/opt/pypi/files /opt/pypi-more/files /opt/wheels})
PY="${PYTHON:-python3}"
STAMP="$DIR/.complete"
want_stamp="$(sha256sum "$LIST" | cut -d' ' -f1)"

entries() { grep -v '^#' "$LIST" | grep -v '^[[:space:]]*$'; }

ready() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] || return 1
  local spec file size sha url
  while read -r spec file size sha url; do
    [ "$(stat -c %s "$DIR/$file" 2>/dev/null || echo -1)" = "$size" ] || return 1
  done < <(entries)
}

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

if ready; then
  echo "real wheels ready: $DIR ($(entries | wc -l) wheels)"
  exit 0
fi

mkdir -p "$DIR"
rm -f "$STAMP"
tmp="$(mktemp -d "$DIR/.download.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
linked=0 copied=0 downloaded=0 kept=0
while read -r spec file size sha url; do
  dest="$DIR/$file"
  if sha_ok "$dest" "$sha"; then kept=$((kept + 1)); continue; fi
  rm -f "$dest"
  for store in "${STORES[@]}"; do
    if sha_ok "$store/$file" "$sha"; then
      if ln "$store/$file" "$dest" 2>/dev/null; then linked=$((linked + 1)); else
        cp "$store/$file" "$tmp/$file" && mv "$tmp/$file" "$dest" && copied=$((copied + 1)); fi
      break
    fi
  done
  [ -f "$dest" ] && continue
  echo "downloading $spec ($((size / 1048576)) MiB)"
  "$PY" -m pip download -q --no-deps --no-build-isolation --dest "$tmp" "$url#sha256=$sha"
  if ! sha_ok "$tmp/$file" "$sha"; then
    echo "real wheels: $file from $url does not have the pinned sha256 $sha" >&2
    exit 1
  fi
  mv "$tmp/$file" "$dest"
  downloaded=$((downloaded + 1))
done < <(entries)

echo "$want_stamp" > "$STAMP"
ready || { echo "real wheels: $DIR is still incomplete after set-up" >&2; exit 1; }
echo "real wheels ready: $DIR ($kept kept, $linked hard-linked, $copied copied, $downloaded downloaded)"
