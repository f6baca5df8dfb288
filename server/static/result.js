// Showing one answer: the image with its boxes at true scale, status, reasons, checks, timings.
import { $, el, formatConfidence, setStatus } from "./dom.js";

const MAX_UPSCALE = 2;

export function showImage(image, onLoad) {
  const preview = $("preview");
  $("frame").hidden = false;
  $("boxes").replaceChildren();
  preview.onload = () => {
    fitImage();
    if (onLoad) onLoad();
  };
  preview.onerror = () => {
    $("frame").hidden = true;
    $("image-info").textContent =
      "The browser cannot display this file; the server will say what it makes of it.";
    if (onLoad) onLoad();
  };
  preview.src = image.url;
}

// Small images are scaled up (at most 2x) so their boxes are easy to see.
export function fitImage() {
  const preview = $("preview");
  if (!preview.naturalWidth) return;
  const room = $("stage").clientWidth;
  const maxHeight = Math.max(240, window.innerHeight * 0.5);
  const scale = Math.min(
    room / preview.naturalWidth,
    maxHeight / preview.naturalHeight,
    MAX_UPSCALE,
  );
  preview.style.width = `${Math.floor(preview.naturalWidth * scale)}px`;
}

export function clearResult(message) {
  setStatus("idle", message);
  $("problem").hidden = true;
  $("details").hidden = true;
  $("image-info").textContent = "";
}

// problem: an RFC 9457 problem detail (title, detail, code, status, errors).
export function showProblem(problem) {
  const heading = problem.status ? `${problem.status} ${problem.title}` : problem.title;
  setStatus("error", problem.status ? `Request failed (${problem.status})` : "Not sent");
  $("problem-title").textContent = heading;
  $("problem-detail").textContent = problem.detail || "";
  $("problem-code").textContent = problem.code || "";
  $("problem-errors").replaceChildren(
    ...(problem.errors || []).map((error) =>
      el("li", { text: `${(error.loc || []).join(".")}: ${error.msg || JSON.stringify(error)}` }),
    ),
  );
  $("problem").hidden = false;
  $("details").hidden = true;
  $("boxes").replaceChildren();
}

function statusText(response) {
  const n = response.detections.length;
  if (response.status === "abstained") {
    return `Abstained: the guards did not trust the answer (${response.reasons.join(", ")})`;
  }
  if (n === 0) return "Accepted: the model says there is no such object";
  return `Accepted: ${n} verified box${n === 1 ? "" : "es"}`;
}

export function showResponse(response, roundTripMs) {
  $("problem").hidden = true;
  setStatus(response.status, statusText(response));
  const info = response.image;
  $("image-info").textContent =
    `${info.width}×${info.height} px` +
    (info.model_width ? ` · model frame ${info.model_width}×${info.model_height}` : "") +
    ` · ${response.model}`;

  // Accepted boxes solid; an abstained answer's candidates dashed.
  const shown =
    response.status === "accepted"
      ? response.detections.map((box) => ({ box, kind: "verified" }))
      : response.candidates.map((box) => ({ box, kind: "candidate" }));
  drawBoxes(shown, info);
  fillBoxTable(shown);
  fillChecks(response.checks);
  fillReasons(response);
  fillTimings(response.timings_ms, roundTripMs);
  $("think-section").hidden = !response.think;
  $("think-text").textContent = response.think || "";
  $("raw-section").hidden = response.raw_output == null;
  $("raw-section").open = false;
  $("raw-text").textContent = response.raw_output || "";
  $("details").hidden = false;
}

// Boxes and points are placed in percent of the original image, so they match it at any scale.
function drawBoxes(shown, info) {
  const layer = $("boxes");
  layer.replaceChildren();
  shown.forEach(({ box, kind }, index) => {
    const caption = `${box.label || "?"} ${formatConfidence(box.confidence)}`;
    const node = box.point ? pointNode(box.point, kind, info) : boxNode(box.bbox, kind, info);
    node.dataset.index = String(index);
    node.title = `${kind}: ${caption}`;
    node.append(el("span", { class: "box-label", text: caption }));
    linkHover(node, index);
    layer.append(node);
  });
}

function boxNode([x1, y1, x2, y2], kind, info) {
  const node = el("div", { class: `box ${kind}` });
  node.style.left = `${(x1 / info.width) * 100}%`;
  node.style.top = `${(y1 / info.height) * 100}%`;
  node.style.width = `${((x2 - x1) / info.width) * 100}%`;
  node.style.height = `${((y2 - y1) / info.height) * 100}%`;
  if (y1 / info.height < 0.08) node.classList.add("below");
  return node;
}

// A point is a crosshair: a small square box centred on it, with two hairlines through it.
function pointNode([x, y], kind, info) {
  const node = el("div", { class: `box point ${kind}` });
  node.style.left = `${(x / info.width) * 100}%`;
  node.style.top = `${(y / info.height) * 100}%`;
  if (y / info.height < 0.08) node.classList.add("below");
  node.append(el("span", { class: "hair h" }), el("span", { class: "hair v" }));
  return node;
}

const coordinates = (box) => box.point || box.bbox;

// Hovering a box or its table row highlights both.
function linkHover(node, index) {
  const highlight = (on) => {
    for (const twin of document.querySelectorAll(`[data-index="${index}"]`)) {
      twin.classList.toggle("hot", on);
    }
  };
  node.addEventListener("mouseenter", () => highlight(true));
  node.addEventListener("mouseleave", () => highlight(false));
}

function fillBoxTable(shown) {
  const points = shown.some(({ box }) => box.point);
  $("coordinates-header").textContent = points ? "point [x, y] px" : "box [x1, y1, x2, y2] px";
  const body = $("boxes-table").tBodies[0];
  body.replaceChildren();
  if (!shown.length) {
    body.append(el("tr", {}, [el("td", { colSpan: 5, text: "none" })]));
    return;
  }
  shown.forEach(({ box, kind }, index) => {
    const row = el("tr", { "data-index": String(index) }, [
      el("td", { class: "num", text: String(index + 1) }),
      el("td", { text: kind }),
      el("td", { text: box.label || "—" }),
      el("td", { class: "num", text: formatConfidence(box.confidence) || "—" }),
      el("td", {
        class: "num",
        text: `[${coordinates(box)
          .map((v) => v.toFixed(1))
          .join(", ")}]`,
      }),
    ]);
    linkHover(row, index);
    body.append(row);
  });
}

function fillChecks(checks) {
  $("checks-table").tBodies[0].replaceChildren(
    ...checks.map((check) =>
      el("tr", { "data-check": check.name }, [
        el("td", { text: check.name + (check.fatal ? "" : " (reported only)") }),
        el("td", {
          class: check.ran === false ? "skip" : check.passed ? "pass" : "fail",
          text: check.ran === false ? "not run" : check.passed ? "passed" : "failed",
        }),
        el("td", { class: "num", text: check.score == null ? "—" : check.score.toFixed(3) }),
        el("td", { text: check.detail || "" }),
      ]),
    ),
  );
}

function fillReasons(response) {
  $("reasons-section").hidden = response.status !== "abstained";
  const details = Object.fromEntries(response.checks.map((check) => [check.name, check.detail]));
  $("reasons").replaceChildren(
    ...response.reasons.map((reason) =>
      el("li", { "data-reason": reason }, [
        el("strong", { text: reason }),
        details[reason] ? `: ${details[reason]}` : "",
      ]),
    ),
  );
}

function fillTimings(timings, roundTripMs) {
  const items = Object.entries(timings || {}).map(([stage, ms]) =>
    el("li", { text: `${stage} ${ms.toFixed(1)} ms` }),
  );
  if (roundTripMs != null) {
    items.push(el("li", { text: `round trip ${roundTripMs.toFixed(0)} ms` }));
  }
  $("timings").replaceChildren(...items);
}
