// facetrail search page: choose a photo, pick a face, give a purpose, see results.
"use strict";

const PAGE = 12;
const state = { file: null, faces: [], selected: null, topK: PAGE, photoUrl: null, mode: "faces", extra: [] };
const MAX_PHOTOS = 10; // photos of one person in one search
const $ = (id) => document.getElementById(id);
const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

function post(url, form) {
  return fetch(url, { method: "POST", body: form, headers: { "X-CSRF-Token": csrfToken() }, credentials: "same-origin" });
}

function setStatus(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

async function apiError(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
  } catch (_) { /* not JSON */ }
  return `The server answered ${response.status}.`;
}

function postJson(url, data) {
  return fetch(url, {
    method: "POST",
    body: JSON.stringify(data),
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
    credentials: "same-origin",
  });
}

function verificationText(verification) {
  const by = verification.confirmed_by || [];
  if (verification.state === "verified") return `Verified by ${by.join(" and ")}`;
  if (verification.state === "confirmed") return `Confirmed by ${by.join(", ")}; needs a second person`;
  return "Lead only: not confirmed";
}

function confirmButton(result, searchId, onConfirmed = null) {
  const wrap = document.createElement("div");
  wrap.className = "verify";
  const note = document.createElement("span");
  note.textContent = verificationText(result.verification || {});
  const button = document.createElement("button");
  button.type = "button";
  button.className = "small";
  button.textContent = "Confirm match";
  button.hidden = result.verification && result.verification.state === "verified";
  button.addEventListener("click", async () => {
    const response = await postJson("/api/v1/confirmations", { search_id: searchId, face_id: result.face_id });
    if (!response.ok) {
      note.textContent = await apiError(response);
      return;
    }
    const body = await response.json();
    note.textContent = verificationText(body);
    button.hidden = true;
    if (onConfirmed) onConfirmed(body);
  });
  wrap.append(note, button);
  return wrap;
}

function updateSubmit() {
  $("submit").disabled = state.selected === null;
  $("copies").disabled = !state.file;
}

function selectFace(index) {
  state.selected = index;
  for (const box of $("boxes").children) {
    box.setAttribute("aria-pressed", String(Number(box.dataset.index) === index));
  }
  const face = state.faces[index];
  $("faces-caption").textContent =
    `${state.faces.length} face(s) found. Searching for face ${index + 1}` +
    (state.faces.length > 1 ? " (click another box to choose it)." : ".");
  updateSubmit();
  return face;
}

function drawBoxes(width, height) {
  const layer = $("boxes");
  layer.replaceChildren();
  state.faces.forEach((face, i) => {
    const [left, top, right, bottom] = face.box;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "face-box";
    button.dataset.index = String(i);
    button.setAttribute("aria-label", `Face ${i + 1} of ${state.faces.length}`);
    button.setAttribute("aria-pressed", "false");
    button.style.left = `${(100 * left) / width}%`;
    button.style.top = `${(100 * top) / height}%`;
    button.style.width = `${(100 * (right - left)) / width}%`;
    button.style.height = `${(100 * (bottom - top)) / height}%`;
    button.addEventListener("click", () => selectFace(i));
    layer.appendChild(button);
  });
}

// Other photos of the same person: each must hold a face; the largest is used.
function drawExtra() {
  const list = $("extra-list");
  list.replaceChildren(...state.extra.map((photo, i) => {
    const item = document.createElement("li");
    const thumb = document.createElement("img");
    thumb.src = photo.url;
    thumb.alt = `Photo ${i + 2}`;
    const label = document.createElement("span");
    label.textContent = `Photo ${i + 2}: ${photo.faces} face(s)`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link";
    remove.textContent = "Remove";
    remove.addEventListener("click", () => {
      URL.revokeObjectURL(photo.url);
      state.extra.splice(i, 1);
      drawExtra();
    });
    item.append(thumb, label, remove);
    return item;
  }));
  $("more-photos").disabled = state.extra.length + 1 >= MAX_PHOTOS;
}

async function addPhotos(files) {
  for (const file of files) {
    if (state.extra.length + 1 >= MAX_PHOTOS) {
      setStatus(`A search takes at most ${MAX_PHOTOS} photos.`, true);
      break;
    }
    const form = new FormData();
    form.append("image", file);
    const response = await post("/api/v1/faces", form);
    if (!response.ok) {
      setStatus(`${file.name}: ${await apiError(response)}`, true);
      continue;
    }
    const body = await response.json();
    if (!body.faces.length) {
      setStatus(`${file.name}: no face was found in this photo, so it was not added.`, true);
      continue;
    }
    state.extra.push({ file, url: URL.createObjectURL(file), faces: body.faces.length });
    setStatus("");
  }
  $("more-photos").value = "";
  drawExtra();
}

async function choosePhoto(file) {
  state.file = file;
  state.extra.forEach((photo) => URL.revokeObjectURL(photo.url));
  state.extra = [];
  drawExtra();
  state.faces = [];
  state.selected = null;
  state.topK = PAGE;
  $("results").hidden = true;
  $("boxes").replaceChildren();
  $("faces-caption").textContent = "";
  updateSubmit();
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photoUrl = URL.createObjectURL(file);
  updateSubmit();
  $("photo").src = state.photoUrl;
  $("preview").hidden = false;
  setStatus("Looking for faces…");
  const form = new FormData();
  form.append("image", file);
  const response = await post("/api/v1/faces", form);
  if (!response.ok) {
    $("preview").hidden = true;
    setStatus(await apiError(response), true);
    return;
  }
  const body = await response.json();
  state.faces = body.faces;
  if (!state.faces.length) {
    setStatus("No face was found in this photo. Try a clearer, larger photo of the face.", true);
    return;
  }
  drawBoxes(body.width, body.height);
  selectFace(0);
  $("add-photos").hidden = false;
  setStatus("");
}

function formatDate(iso) {
  return iso ? new Date(iso).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" }) : "?";
}

function link(url, text) {
  const anchor = document.createElement("a");
  anchor.href = url;
  anchor.rel = "noopener noreferrer nofollow";
  anchor.target = "_blank";
  anchor.textContent = text;
  return anchor;
}

const SHOWN_APPEARANCES = 3;

function appearanceItem(appearance) {
  const item = document.createElement("li");
  const url = appearance.page_url || appearance.location;
  const text = appearance.page_title || url;
  item.append(/^https?:\/\//i.test(url) ? link(url, text) : document.createTextNode(text));
  const when = document.createElement("span");
  when.className = "when";
  when.textContent =
    ` · ${appearance.domain || "local file"} · first seen ${formatDate(appearance.first_seen)}` +
    ` · last seen ${formatDate(appearance.last_seen)}`;
  item.append(when);
  if (appearance.gone) {
    const gone = document.createElement("span");
    gone.className = "gone";
    gone.textContent = "gone";
    gone.title = "No longer found there when last checked";
    item.append(" ", gone);
  }
  return item;
}

function appearanceList(appearances) {
  const list = document.createElement("ul");
  list.className = "appearances";
  list.setAttribute("aria-label", "Where this image appears");
  list.append(...appearances.slice(0, SHOWN_APPEARANCES).map(appearanceItem));
  if (appearances.length > SHOWN_APPEARANCES) {
    const more = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    button.textContent = `${appearances.length - SHOWN_APPEARANCES} more place(s)`;
    button.addEventListener("click", () => {
      more.replaceWith(...appearances.slice(SHOWN_APPEARANCES).map(appearanceItem));
    });
    more.append(button);
    list.append(more);
  }
  return list;
}

function domainSummary(groups) {
  const list = $("domains");
  list.replaceChildren(...groups.map((group) => {
    const item = document.createElement("li");
    const name = document.createElement("strong");
    name.textContent = group.domain;
    const pages = document.createElement("ul");
    pages.append(...group.pages.map((page) => {
      const entry = document.createElement("li");
      const label = page.title || page.url || "files";
      entry.append(page.url && /^https?:\/\//i.test(page.url) ? link(page.url, label) : document.createTextNode(label));
      entry.append(` — result${page.ranks.length > 1 ? "s" : ""} ${page.ranks.join(", ")}${page.gone ? " (gone)" : ""}`);
      return entry;
    }));
    item.append(name, pages);
    return item;
  }));
  $("by-domain").hidden = !groups.length;
}

const BAND_WORDS = {
  "very strong": "Very strong match",
  strong: "Strong match",
  possible: "Possible match",
  weak: "Weak: probably someone else",
};

function bandWords(band) {
  return BAND_WORDS[band] || band;
}

function firstPlace(result) {
  const first = (result.image.appearances || [])[0];
  if (!first) return { domain: "local files", url: null, title: result.image.location || "a stored file" };
  return { domain: first.domain || "local files", url: first.page_url || first.location,
           title: first.page_title || first.page_url || first.location };
}

// The image with the face marked: the box is in the image's own pixels, placed in percent.
function markedImage(src, box, width, height, alt) {
  const figure = document.createElement("figure");
  figure.className = "shot";
  const img = document.createElement("img");
  img.src = src;
  img.alt = alt;
  img.loading = "lazy";
  const mark = document.createElement("span");
  mark.className = "face-mark";
  const [left, top, right, bottom] = box;
  mark.style.left = `${(100 * left) / width}%`;
  mark.style.top = `${(100 * top) / height}%`;
  mark.style.width = `${(100 * (right - left)) / width}%`;
  mark.style.height = `${(100 * (bottom - top)) / height}%`;
  figure.append(img, mark);
  return figure;
}

function seenLine(image) {
  const line = document.createElement("div");
  line.className = "seen";
  line.textContent = `First seen ${formatDate(image.first_seen)} · last seen ${formatDate(image.last_seen)}`;
  return line;
}

function resultCard(result, searchId, rank) {
  const item = document.createElement("li");
  item.className = "card result";
  item.tabIndex = 0;
  item.dataset.rank = String(rank);
  item.dataset.faceId = String(result.face_id);
  item.setAttribute("aria-label", `Result ${rank}: ${bandWords(result.band)}`);
  const shot = markedImage(result.thumb_url, result.box, result.image.width, result.image.height,
                           `Image holding the matching face (result ${rank})`);
  const meta = document.createElement("div");
  meta.className = "meta";
  const place = firstPlace(result);
  const where = document.createElement("div");
  where.className = "place";
  const site = document.createElement("strong");
  site.textContent = place.domain;
  where.append(site, " · ", place.url && /^https?:\/\//i.test(place.url) ? link(place.url, place.title)
                                                                       : document.createTextNode(place.title));
  const band = document.createElement("div");
  band.className = `band band-${result.band.replace(" ", "-")}`;
  band.textContent = `#${rank} · ${bandWords(result.band)}` +
    (state.photoCount > 1 ? ` · matched photo ${result.query_photo + 1}` : "");
  band.title = `distance ${result.distance.toFixed(3)}` + (result.band_meaning ? ` · ${result.band_meaning}` : "");
  const others = (result.image.appearances || []).slice(1);
  meta.append(band, where);
  if (result.band_meaning) {
    const meaning = document.createElement("div");
    meaning.className = "meaning";
    meaning.textContent = result.band_meaning;
    meta.append(meaning);
  }
  if (others.length) meta.append(appearanceList(others));
  meta.append(seenLine(result.image));
  const compare = document.createElement("button");
  compare.type = "button";
  compare.className = "small secondary compare";
  compare.textContent = "Compare";
  compare.addEventListener("click", () => openCompare(result, searchId, item));
  const verify = confirmButton(result, searchId);
  verify.prepend(compare);
  meta.append(verify);
  item.append(shot, meta);
  item.result = result;
  return item;
}

// Results grouped by the site and page they were first found on; groups in the order of their best result.
function groupedCards(results, searchId) {
  const groups = new Map();
  results.forEach((result, i) => {
    const place = firstPlace(result);
    const key = `${place.domain}\n${place.url || place.title}`;
    if (!groups.has(key)) groups.set(key, { place, cards: [] });
    groups.get(key).cards.push(resultCard(result, searchId, i + 1));
  });
  return [...groups.values()].map(({ place, cards }) => {
    const group = document.createElement("li");
    group.className = "group";
    const heading = document.createElement("h3");
    heading.append(`${place.domain} · `, place.url && /^https?:\/\//i.test(place.url) ? link(place.url, place.title)
                                                                                     : document.createTextNode(place.title));
    const list = document.createElement("ol");
    list.className = "grid";
    list.append(...cards);
    group.append(heading, list);
    return group;
  });
}

// The side-by-side comparison: the query face and the result face, large, with both images' provenance.
function queryPanel() {
  const panel = document.createElement("section");
  const face = state.faces[state.selected];
  const title = document.createElement("h3");
  title.textContent = "Your photo";
  panel.append(title);
  if (face && state.photoUrl) {
    const canvas = document.createElement("canvas");
    canvas.className = "face-large";
    const [left, top, right, bottom] = face.box;
    const margin = 0.25 * Math.max(right - left, bottom - top);
    const photo = $("photo");
    const x = Math.max(0, left - margin), y = Math.max(0, top - margin);
    const w = Math.min(photo.naturalWidth - x, right - left + 2 * margin);
    const h = Math.min(photo.naturalHeight - y, bottom - top + 2 * margin);
    canvas.width = 320;
    canvas.height = Math.round((320 * h) / w);
    canvas.getContext("2d").drawImage(photo, x, y, w, h, 0, 0, canvas.width, canvas.height);
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "The face you searched for");
    panel.append(canvas);
  }
  const about = document.createElement("p");
  about.className = "provenance";
  const sha = `sha256 ${(state.querySha || "").slice(0, 16)}…`;
  about.textContent = state.photoUrl ? `Uploaded by you for this search (not stored; ${sha})`
                                     : `The photo searched with is not kept (${sha}): compare with the case file.`;
  panel.append(about);
  return panel;
}

function resultPanel(result) {
  const panel = document.createElement("section");
  const title = document.createElement("h3");
  title.textContent = bandWords(result.band);
  const crop = document.createElement("img");
  crop.className = "face-large";
  crop.src = result.crop_url;
  crop.alt = "The matching face";
  const shot = markedImage(result.thumb_url, result.box, result.image.width, result.image.height,
                           "The image the matching face is in");
  const about = document.createElement("div");
  about.className = "provenance";
  const place = firstPlace(result);
  about.append(`${place.domain} · `, place.url && /^https?:\/\//i.test(place.url) ? link(place.url, place.title)
                                                                               : document.createTextNode(place.title));
  about.append(seenLine(result.image));
  const facts = document.createElement("div");
  facts.textContent = `${result.image.width}×${result.image.height} · distance ${result.distance.toFixed(3)} · ` +
    `sha256 ${result.image.sha256.slice(0, 16)}…`;
  about.append(facts);
  if ((result.image.appearances || []).length > 1) about.append(appearanceList(result.image.appearances.slice(1)));
  panel.append(title, crop, shot, about);
  return panel;
}

function openCompare(result, searchId, card) {
  const dialog = $("compare");
  const body = $("compare-body");
  const verify = confirmButton(result, searchId, (answer) => {
    result.verification = answer;
    const note = card.querySelector(".verify span");
    if (note) note.textContent = verificationText(answer);
    const button = card.querySelector(".verify button:not(.compare)");
    if (button) button.hidden = true;
  });
  body.replaceChildren(queryPanel(), resultPanel(result));
  $("compare-actions").replaceChildren(verify);
  dialog.returnFocus = card;
  dialog.showModal();
}

// Keyboard: arrow keys (or j/k) move between results, Enter or c compares, Escape closes.
function onResultKey(event) {
  const card = event.target.closest && event.target.closest("li.result");
  if (!card || event.target !== card) return;
  const cards = [...document.querySelectorAll("#grid li.result")];
  const at = cards.indexOf(card);
  if (["ArrowDown", "ArrowRight", "j"].includes(event.key)) cards[Math.min(at + 1, cards.length - 1)].focus();
  else if (["ArrowUp", "ArrowLeft", "k"].includes(event.key)) cards[Math.max(at - 1, 0)].focus();
  else if (event.key === "Enter" || event.key === "c") card.querySelector("button.compare").click();
  else return;
  event.preventDefault();
}

async function search(event, mode = "faces") {
  if (event) event.preventDefault();
  state.mode = mode;
  const fields = [
    ["purpose", "A purpose is required: choose the purpose of this search."],
    ["justification", "A justification is required: say why this search is needed."],
    ["case-ref", "A case reference is required."],
  ];
  if (!state.file || (mode === "faces" && state.selected === null)) {
    setStatus("Choose a photo with a face first.", true);
    return;
  }
  for (const [id, message] of fields) {
    if (!$(id).value.trim()) {
      setStatus(message, true);
      $(id).focus();
      return;
    }
  }
  const form = new FormData();
  form.append("image", state.file);
  if (mode === "faces") state.extra.forEach((photo) => form.append("image", photo.file));
  form.append("purpose", $("purpose").value);
  form.append("justification", $("justification").value.trim());
  form.append("case_ref", $("case-ref").value.trim());
  if (mode === "faces") {
    form.append("face", String(state.selected));
    state.extra.forEach(() => form.append("face", "0")); // the largest face of each other photo
  }
  form.append("mode", mode);
  form.append("top_k", String(state.topK));
  $("submit").disabled = true;
  setStatus("Searching…");
  try {
    const response = await post("/api/v1/search", form);
    if (!response.ok) {
      setStatus(await apiError(response), true);
      return;
    }
    const body = await response.json();
    if (body.approval && body.approval.policy === "prior" && body.approval.state === "pending") {
      $("results").hidden = true;
      state.withheld = body.audit_id;
      $("check").hidden = false;
      setStatus(`Results are withheld until a supervisor approves this search (search ${body.audit_id}).`);
      return;
    }
    showResults(body);
  } finally {
    updateSubmit();
  }
}

async function checkWithheld() {
  const response = await fetch(`/api/v1/searches/${state.withheld}`, { credentials: "same-origin" });
  if (!response.ok) {
    setStatus(await apiError(response), true);
    return;
  }
  const body = await response.json();
  if (body.approval && body.approval.policy === "prior" && body.approval.state === "pending") {
    setStatus(`Search ${state.withheld} is still waiting for a supervisor.`);
  } else if (body.approval && body.approval.state === "denied") {
    $("check").hidden = true;
    setStatus(`Search ${state.withheld} was denied: ${body.approval.reason}`, true);
  } else {
    $("check").hidden = true;
    showResults(body);
  }
}

function copyCard(copy) {
  const item = document.createElement("li");
  item.className = "card";
  const thumb = document.createElement("img");
  thumb.src = copy.thumb_url;
  thumb.alt = "A copy of your photo";
  thumb.loading = "lazy";
  const meta = document.createElement("div");
  meta.className = "meta";
  const closeness = document.createElement("div");
  closeness.className = "band";
  closeness.textContent = `copy · ${copy.distance} of 64 bits apart`;
  const details = document.createElement("div");
  details.textContent =
    `${copy.image.width}×${copy.image.height} · first seen ${formatDate(copy.image.first_seen)} · ` +
    `last seen ${formatDate(copy.image.last_seen)}`;
  meta.append(closeness, appearanceList(copy.image.appearances || []), details);
  item.append(thumb, meta);
  return item;
}

function showResults(body) {
  const grid = $("grid");
  const copies = body.mode === "copies";
  const items = copies ? body.copies : body.results;
  $("results-title").textContent = copies ? "Copies of this photo" : "Where this person appears";
  state.querySha = body.query && body.query.sha256;
  state.photoCount = (body.query && body.query.photos && body.query.photos.length) || 1;
  grid.replaceChildren(...(copies ? items.map(copyCard) : groupedCards(items, body.audit_id)));
  grid.classList.toggle("grouped", !copies);
  domainSummary(body.by_domain || []);
  $("results").hidden = false;
  $("more").hidden = !$("search-form") || items.length < state.topK;
  setStatus(
    items.length
      ? `${items.length} result(s). This search was recorded (audit entry ${body.audit_id}).`
      : `${copies ? "No copy found" : "Nothing within the match threshold"}. ` +
        `This search was recorded (audit entry ${body.audit_id}).`
  );
}

function initResults() {
  $("check").addEventListener("click", checkWithheld);
  $("grid").addEventListener("keydown", onResultKey);
  $("compare-close").addEventListener("click", () => $("compare").close());
  $("compare").addEventListener("close", () => $("compare").returnFocus && $("compare").returnFocus.focus());
  const earlier = $("earlier");
  if (earlier) { // /searches/{id}: an earlier search's results, e.g. for a second person to verify
    state.withheld = Number(earlier.dataset.searchId);
    checkWithheld();
  }
}

function initSearch() {
  const input = $("image");
  const drop = $("drop");
  input.addEventListener("change", () => input.files.length && choosePhoto(input.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) choosePhoto(e.dataTransfer.files[0]);
  });
  $("more-photos").addEventListener("change", (e) => e.target.files.length && addPhotos([...e.target.files]));
  $("search-form").addEventListener("submit", search);
  $("more").addEventListener("click", () => { state.topK += PAGE; search(null, state.mode); });
  $("copies").addEventListener("click", () => { state.topK = PAGE; search(null, "copies"); });
}

function init() {
  if ($("grid")) initResults();
  if ($("search-form")) initSearch(); // absent when the role may not search, and on an earlier search's page
}

document.addEventListener("DOMContentLoaded", init);
