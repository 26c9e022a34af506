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
"$BIN/facetrail" index "$PHOTOS" --legal-basis "sample photos shipped with the face_recognition package (MIT licence)"

echo
echo "== Accounts"
if "$BIN/facetrail" init admin > "$DEMO_DIR/.admin" 2>/dev/null; then
  "$BIN/facetrail" --as admin user add investigator --role investigator > "$DEMO_DIR/.investigator"
else  # accounts exist from an earlier run: give both new one-time passwords
  "$BIN/facetrail" --as admin user reset-password admin > "$DEMO_DIR/.admin"
  "$BIN/facetrail" --as admin user reset-password investigator > "$DEMO_DIR/.investigator"
fi
admin_password=$(grep -o '[^ ]*$' "$DEMO_DIR/.admin")
investigator_password=$(grep -o '[^ ]*$' "$DEMO_DIR/.investigator")
rm -f "$DEMO_DIR/.admin" "$DEMO_DIR/.investigator"
echo "  admin         one-time password: $admin_password"
echo "  investigator  one-time password: $investigator_password   (searches)"
echo "  (each is asked to choose its own password at first sign-in)"

echo
echo "== Example search as the investigator: who else looks like obama.jpg?"
"$BIN/facetrail" --as investigator search "$PHOTOS/obama.jpg" --purpose source-verification \
  --justification "demo: show how search works" --case DEMO-1 --top-k 5

cat <<TXT

Try it yourself (data folder: $FACETRAIL_DATA_DIR):
  export FACETRAIL_DATA_DIR=$FACETRAIL_DATA_DIR
  $BIN/facetrail --as investigator search $PHOTOS/biden.jpg --purpose source-verification \\
      --justification "your reason" --case YOUR-REF --json
  $BIN/facetrail stats
  $BIN/facetrail --as admin audit verify

== Web app: open http://127.0.0.1:${PORT:-8000}/ and sign in as investigator with the password above
   (API docs at /docs). Ctrl-C stops it.
TXT
exec "$BIN/facetrail" serve --host 127.0.0.1 --port "${PORT:-8000}"
