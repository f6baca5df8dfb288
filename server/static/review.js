// The review page: list recorded answers, show one, store a person's decision beside it.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { tab: "abstained", record: null, image: null, scale: 1, drawn: null, drag: null };

function headers(json) {
  const h = {};
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

function say(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function api(path, options) {
  const response = await fetch(path, options);
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(problem.detail || problem.title || response.statusText);
  }
  return response;
}

async function loadList() {
  const query = state.tab === "abstained"
    ? "status=abstained&limit=100" : "status=accepted&sample=true&limit=20";
  try {
    const page = await (await api("../v1/records?" + query, { headers: headers() })).json();
    const list = $("records");
    list.replaceChildren();
    for (const record of page.records) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.dataset.record = record.id;
      button.textContent = "#" + record.id + " " + record.expression;
      if (record.review) {
        const done = document.createElement("span");
        done.className = "done";
        done.textContent = " ✓ " + record.review.decision;
        button.append(done);
      }
      button.addEventListener("click", () => show(record));
      item.append(button);
      list.append(item);
    }
    say(page.records.length ? "" : "Nothing to review here.");
  } catch (err) {
    say(err.message, true);
  }
}

function modelBoxes(record) {
  const key = record.status === "accepted" ? "detections" : "candidates";
  return (record.verdict[key] || []).map((d) => d.bbox);
}

async function show(record) {
  state.record = record;
  state.drawn = null;
  for (const b of document.querySelectorAll("#records button")) {
    b.classList.toggle("current", b.dataset.record === String(record.id));
  }
  $("expression").textContent = record.expression;
  const reasons = record.verdict.reasons.length ? " (" + record.verdict.reasons.join(", ") + ")" : "";
  $("verdict").textContent = record.status + reasons + (record.review ? " · reviewed: " + record.review.decision : "");
  try {
    const blob = await (await api("../v1/records/" + record.id + "/image", { headers: headers() })).blob();
    const image = new Image();
    await new Promise((resolve, reject) => {
      image.onload = resolve;
      image.onerror = () => reject(new Error("the image could not be shown"));
      image.src = URL.createObjectURL(blob);
    });
    state.image = image;
    const canvas = $("canvas");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    draw();
    $("accept").disabled = modelBoxes(record).length === 0;
    $("absent").disabled = false;
    $("save-box").disabled = true;
    say("");
  } catch (err) {
    say(err.message, true);
  }
}

function draw() {
  const ctx = $("canvas").getContext("2d");
  ctx.drawImage(state.image, 0, 0);
  ctx.lineWidth = Math.max(2, state.image.naturalWidth / 300);
  ctx.setLineDash([8, 6]);
  ctx.strokeStyle = "#1e88e5";
  for (const [x1, y1, x2, y2] of modelBoxes(state.record)) ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
  ctx.setLineDash([]);
  if (state.drawn) {
    const [x1, y1, x2, y2] = state.drawn;
    ctx.strokeStyle = "#ef6c00";
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
  }
}

function imagePoint(event) {
  const canvas = $("canvas");
  const rect = canvas.getBoundingClientRect();
  const x = ((event.clientX - rect.left) / rect.width) * canvas.width;
  const y = ((event.clientY - rect.top) / rect.height) * canvas.height;
  return [Math.min(Math.max(0, x), canvas.width), Math.min(Math.max(0, y), canvas.height)];
}

function onDown(event) {
  if (!state.record) return;
  state.drag = imagePoint(event);
  $("canvas").setPointerCapture?.(event.pointerId);
}

function onMove(event) {
  if (!state.drag) return;
  const [x, y] = imagePoint(event);
  const [x0, y0] = state.drag;
  state.drawn = [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)].map(Math.round);
  draw();
}

function onUp(event) {
  if (!state.drag) return;
  onMove(event);
  state.drag = null;
  const box = state.drawn;
  $("save-box").disabled = !box || box[2] - box[0] < 2 || box[3] - box[1] < 2;
}

async function decide(decision) {
  const body = { decision };
  if (decision === "box") body.boxes = [state.drawn];
  try {
    const response = await api("../v1/records/" + state.record.id + "/review", {
      method: "POST", headers: headers(true), body: JSON.stringify(body),
    });
    state.record = await response.json();
    $("verdict").textContent = state.record.status + " · reviewed: " + decision;
    await loadList();
    say("Saved: " + decision);
  } catch (err) {
    say(err.message, true);
  }
}

for (const tab of document.querySelectorAll("[data-tab]")) {
  tab.addEventListener("click", () => {
    state.tab = tab.dataset.tab;
    for (const t of document.querySelectorAll("[data-tab]")) t.setAttribute("aria-pressed", String(t === tab));
    loadList();
  });
}
$("canvas").addEventListener("pointerdown", onDown);
$("canvas").addEventListener("pointermove", onMove);
$("canvas").addEventListener("pointerup", onUp);
$("accept").addEventListener("click", () => decide("accept"));
$("save-box").addEventListener("click", () => decide("box"));
$("absent").addEventListener("click", () => decide("absent"));
$("api-key").addEventListener("change", loadList);
loadList();
