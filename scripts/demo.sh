#!/usr/bin/env bash
# Build a small web site from sample photos shipped in a PyPI sdist, serve it on 127.0.0.1:8765,
# declare it as a source, crawl it, show a search, then start the web app on 127.0.0.1:8000.
# Safe to run again on an existing demo folder.
set -euo pipefail
DEMO_DIR=${DEMO_DIR:-facetrail-demo}
BIN=${BIN:-.venv/bin}
PORT=${PORT:-8000}
SITE_PORT=8765  # the source is declared with this URL, so it stays fixed
SITE_URL="http://127.0.0.1:$SITE_PORT/"
PHOTOS="$DEMO_DIR/photos"
SITE="$DEMO_DIR/site"
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
echo "== A demo web site on $SITE_URL (pages with photos; robots.txt, noimageindex, social links)"
"$BIN/python" scripts/demo_site.py build "$PHOTOS" "$SITE"
"$BIN/python" scripts/demo_site.py serve "$SITE" --port "$SITE_PORT" > "$DEMO_DIR/site.log" 2>&1 &
site_pid=$!
trap 'kill "$site_pid" 2>/dev/null || true' EXIT  # the site runs as long as this script
trap 'exit 130' INT
trap 'exit 143' TERM
until grep -q '^Serving' "$DEMO_DIR/site.log"; do
  if ! kill -0 "$site_pid" 2>/dev/null; then
    echo "The demo site could not start (is port $SITE_PORT in use, by an earlier demo?):" >&2
    cat "$DEMO_DIR/site.log" >&2
    exit 1
  fi
  sleep 0.1
done

echo
echo "== Accounts"
# Acting as an account needs proof. The demo binds the admin account to your operating-system login
# (so `--as admin` works for you, checked against your real user id) and gives the investigator an
# API token for the example search; both get one-time passwords for the web app.
me=$(id -un)
if "$BIN/facetrail" init admin --token > "$DEMO_DIR/.admin" 2>/dev/null; then
  chmod 600 "$DEMO_DIR/.admin"
  FACETRAIL_TOKEN=$(grep -o 'ft_[^ ]*' "$DEMO_DIR/.admin") "$BIN/facetrail" user bind-os-user admin "$me" > /dev/null
  "$BIN/facetrail" --as admin user add investigator --role investigator > "$DEMO_DIR/.investigator"
  "$BIN/facetrail" --as admin user add supervisor --role supervisor > "$DEMO_DIR/.supervisor"
  admin_password=$(grep -o 'change it at first login): [^ ]*' "$DEMO_DIR/.admin" | grep -o '[^ ]*$')
elif "$BIN/facetrail" --as admin user list > /dev/null 2>&1; then  # accounts from an earlier run: new passwords
  "$BIN/facetrail" --as admin user reset-password investigator > "$DEMO_DIR/.investigator"
  "$BIN/facetrail" --as admin user add supervisor --role supervisor > /dev/null 2>&1 || true  # an older demo had none
  "$BIN/facetrail" --as admin user reset-password supervisor > "$DEMO_DIR/.supervisor"
  admin_password=$("$BIN/facetrail" --as admin user reset-password admin | grep -o '[^ ]*$')
else
  echo "Accounts exist in $FACETRAIL_DATA_DIR but the admin is not bound to your login ($me): acting as it" >&2
  echo "needs its password or token (see README, Command line). Remove $DEMO_DIR to start afresh." >&2
  exit 1
fi
investigator_password=$(grep -o '[^ ]*$' "$DEMO_DIR/.investigator")
supervisor_password=$(grep -o '[^ ]*$' "$DEMO_DIR/.supervisor")
rm -f "$DEMO_DIR/.admin" "$DEMO_DIR/.investigator" "$DEMO_DIR/.supervisor"
investigator_token=$("$BIN/facetrail" --as admin token create --user investigator --name demo --days 1 \
  | grep -o 'ft_[^ ]*')
supervisor_token=$("$BIN/facetrail" --as admin token create --user supervisor --name demo --days 1 \
  | grep -o 'ft_[^ ]*')
echo "  admin         one-time password: $admin_password   (bound to your login $me: --as admin)"
echo "  supervisor    one-time password: $supervisor_password   (opens cases, approves)"
echo "  investigator  one-time password: $investigator_password   (searches under case DEMO-1)"
echo "  (each is asked to choose its own password at first sign-in)"

echo
echo "== A case to search under: opened by the supervisor, the investigator a member"
if ! FACETRAIL_TOKEN=$supervisor_token "$BIN/facetrail" case show DEMO-1 > /dev/null 2>&1; then
  FACETRAIL_TOKEN=$supervisor_token "$BIN/facetrail" case open DEMO-1 --title "Demo: where do these photos appear?" \
    --purpose source-verification --authority "Demo data-protection officer" --authorisation-ref DPO-DEMO-1 \
    --authorised-on "$(date +%F)" --expires "$(date -d '+30 days' +%F)" --member investigator
fi

echo
echo "== Declaring it as a source and crawling it"
if "$BIN/facetrail" source show demo-site > /dev/null 2>&1; then
  echo "Source 'demo-site' is declared already."
else
  "$BIN/facetrail" source add demo-site --url "$SITE_URL" \
    --legal-basis "demo site served locally from the face_recognition package's sample photos (MIT licence)"
fi
if "$BIN/facetrail" source show photos > /dev/null 2>&1; then  # left by an older demo that indexed the folder
  "$BIN/facetrail" --as admin source remove photos --yes
fi
# Loopback addresses are never fetched unless allowed one host:port at a time; a local site may go fast.
FACETRAIL_FETCH_ALLOW="127.0.0.1:$SITE_PORT" FACETRAIL_CRAWL_DELAY=0.1 "$BIN/facetrail" crawl demo-site

echo
echo "== Example search as the investigator: where else does the person in obama.jpg appear?"
# The same search as in "Try it yourself" below, as JSON, printed with the pages each image is on.
show_pages=$(cat <<'PY'
import json, sys
for line in sys.stdin:
    result = json.loads(line)
    if result.get("error"):
        print("error:", result["error"])
    for rank, match in enumerate(result["results"], 1):
        image = match["image"]
        print(f"{rank:2}. {match['band']:<11} distance {match['distance']:.3f}  image {image['location']}")
        for seen in image["appearances"]:
            title = f'  "{seen["page_title"]}"' if seen["page_title"] else ""
            print(f"      on {seen['page_url'] or seen['location']}{title}")
    print(f"(search {result['audit_id']}, recorded in the audit log)")
PY
)
shown=$(FACETRAIL_TOKEN=$investigator_token "$BIN/facetrail" search "$PHOTOS/obama.jpg" --purpose source-verification \
  --justification "demo: show how search works" --case DEMO-1 --json | "$BIN/python" -c "$show_pages")
echo "$shown"
search_id=$(echo "$shown" | grep -o '(search [0-9]*' | grep -o '[0-9]*$')

echo
echo "== A watch under case DEMO-1 on the person in obama.jpg: asked by the investigator, approved by the supervisor"
requested=$(FACETRAIL_TOKEN=$investigator_token "$BIN/facetrail" watch request "$PHOTOS/obama.jpg" --case DEMO-1 \
  --days 7)
echo "$requested"
watch_id=$(echo "$requested" | grep -o '^Watch [0-9]*' | grep -o '[0-9]*$')
FACETRAIL_TOKEN=$supervisor_token "$BIN/facetrail" watch approve "$watch_id"
echo
echo "== The site publishes a new story with a new photo; the second crawl fires the watch"
"$BIN/python" scripts/demo_site.py add-story "$PHOTOS/obama2.jpg" "$SITE"
FACETRAIL_FETCH_ALLOW="127.0.0.1:$SITE_PORT" FACETRAIL_CRAWL_DELAY=0.1 "$BIN/facetrail" crawl demo-site
FACETRAIL_TOKEN=$investigator_token "$BIN/facetrail" watch inbox

echo
echo "== An evidence package of the example search (WACZ, signed), checked offline"
package="$DEMO_DIR/evidence-search-$search_id.wacz"
FACETRAIL_TOKEN=$investigator_token "$BIN/facetrail" evidence export "$search_id" --out "$package"
"$BIN/facetrail" evidence verify "$package" | tail -n 1
tampered="$DEMO_DIR/evidence-tampered.wacz"
"$BIN/python" - "$package" "$tampered" <<'PY'
import sys, zipfile
source, target = sys.argv[1:]
with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
    for item in zin.infolist():
        data = zin.read(item)
        if item.filename == "pages/pages.jsonl":  # one byte of the package changed
            data = data[:-2] + bytes([data[-2] ^ 1]) + data[-1:]
        zout.writestr(item, data)
PY
if "$BIN/facetrail" evidence verify "$tampered" > "$DEMO_DIR/tampered.txt"; then
  echo "the tampered package was accepted: this should not happen" >&2; exit 1
fi
grep -i "fail" "$DEMO_DIR/tampered.txt" | head -n 3
echo "(one byte changed in pages/pages.jsonl: refused, as it should be)"

cat <<TXT

Left out by design: the pages under /private/ (robots.txt disallows them), the images of the 2019
gallery page (it says noimageindex), and the Facebook and example.org links (social media is never
crawled; other sites are outside the source's scope). The site's pages are in $SITE/.

Try it yourself (data folder: $FACETRAIL_DATA_DIR):
  export FACETRAIL_DATA_DIR=$FACETRAIL_DATA_DIR
  export FACETRAIL_TOKEN=$investigator_token   # the investigator's token (1 day)
  $BIN/facetrail search $PHOTOS/biden.jpg --purpose source-verification \\
      --justification "your reason" --case DEMO-1
  $BIN/facetrail evidence verify $package
  $BIN/facetrail watch list --case DEMO-1
  $BIN/facetrail source list
  FACETRAIL_FETCH_ALLOW=127.0.0.1:$SITE_PORT $BIN/facetrail crawl demo-site   # while the demo runs
  $BIN/facetrail stats
  FACETRAIL_TOKEN= $BIN/facetrail --as admin audit verify   # you act as admin by your login's binding

== Web app: open http://127.0.0.1:$PORT/ and sign in as investigator with the password above
   (API docs at /docs; result links lead to the demo site on $SITE_URL). Ctrl-C stops both.
TXT
"$BIN/facetrail" serve --host 127.0.0.1 --port "$PORT"
