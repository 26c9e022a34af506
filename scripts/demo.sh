#!/usr/bin/env bash
# Build a small index from sample photos shipped in a PyPI sdist, then show a search.
set -euo pipefail
DEMO_DIR=${DEMO_DIR:-facetrail-demo}
BIN=${BIN:-.venv/bin}
PHOTOS="$DEMO_DIR/photos"
export FACETRAIL_DATA_DIR="$DEMO_DIR/data"

if [ ! -d "$PHOTOS" ]; then
  echo "Fetching sample photos (the face-recognition 1.3.0 source package ships test images)..."
  tmp=$(mktemp -d)
  "$BIN/python" -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps \
    -d "$tmp" face-recognition==1.3.0
  mkdir -p "$PHOTOS"
  tar -xzf "$tmp"/face_recognition-1.3.0.tar.gz -C "$tmp"
  cp "$tmp"/face_recognition-1.3.0/tests/test_images/*.jpg "$PHOTOS"/
  rm -rf "$tmp"
fi

echo
echo "== Indexing $PHOTOS"
"$BIN/facetrail" index "$PHOTOS"

echo
echo "== Example search: who else looks like obama.jpg?"
"$BIN/facetrail" search "$PHOTOS/obama.jpg" --purpose "demo: show how search works" --top-k 5

cat <<TXT

Try it yourself (data folder: $FACETRAIL_DATA_DIR):
  export FACETRAIL_DATA_DIR=$FACETRAIL_DATA_DIR
  $BIN/facetrail search $PHOTOS/biden.jpg --purpose "your reason" --json
  $BIN/facetrail stats
  $BIN/facetrail audit verify

== Web app: open http://127.0.0.1:${PORT:-8000}/ (API docs at /docs). Ctrl-C stops it.
TXT
exec "$BIN/facetrail" serve --host 127.0.0.1 --port "${PORT:-8000}"
