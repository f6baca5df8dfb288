// boxguard playground: plain browser JavaScript modules, no build step, same-origin requests.
import { $, el, formatBytes, setStatus } from "./dom.js";
import { clearResult, fitImage, showImage, showProblem, showResponse } from "./result.js";
import { curlSnippet, pythonSnippet } from "./snippets.js";

const KEY_STORAGE = "boxguard.apiKey";
const HISTORY_SIZE = 8;
const READY_RETRY_MS = 2000;

const state = {
  config: null, // GET playground/config
  image: null, // {blob, name, url, sample}
  history: [], // [{request, image, response | problem, roundTripMs, at}], newest first
  shown: null, // the history entry on screen
};

// ---------- the server ----------

async function loadReady() {
  const target = $("server-state");
  try {
    const response = await fetch("readyz", { cache: "no-store" });
    const body = await response.json();
    if (response.ok) {
      target.textContent = `ready · model ${body.model} · backend ${body.backend}`;
      target.className = "server-state ready";
      return;
    }
    target.textContent = "not ready yet: the backend is starting (or failed); retrying…";
  } catch (err) {
    target.textContent = "the server cannot be reached; retrying…";
  }
  target.className = "server-state not-ready";
  setTimeout(loadReady, READY_RETRY_MS);
}

async function loadConfig() {
  const response = await fetch("playground/config", { cache: "no-store" });
  const config = await response.json();
  state.config = config;
  $("min-confidence").value = config.policy.min_confidence;
  $("visual-check").checked = config.policy.visual_check;
  $("sc-k").value = config.policy.self_consistency_k;
  $("sc-k").max = config.max_policy_samples;
  showConfidence();
  $("api-key-row").hidden = !config.api_key_required;
  $("api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
  for (const sample of config.samples) {
    const button = el("button", { type: "button", class: "sample", "data-sample": sample.name }, [
      el("img", { src: sample.url, alt: "" }),
      el("span", { text: sample.title }),
    ]);
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", () => pickSample(sample));
    $("samples").append(button);
  }
}

// ---------- the image ----------

// Object URLs live as long as the current image or a history entry shows them.
function releaseImage(image) {
  const inUse = state.image === image || state.history.some((entry) => entry.image === image);
  if (image && !inUse) URL.revokeObjectURL(image.url);
}

function setImage(blob, name, sample = null) {
  const previous = state.image;
  state.image = { blob, name, url: URL.createObjectURL(blob), sample };
  releaseImage(previous);
  for (const button of document.querySelectorAll(".sample")) {
    const pressed = sample !== null && button.dataset.sample === sample.name;
    button.setAttribute("aria-pressed", String(pressed));
  }
  $("image-name").textContent = `${name} (${formatBytes(blob.size)})`;
  showImage(state.image, null);
  state.shown = null;
  clearResult("Image ready: type what to find and press Enter.");
}

async function pickSample(sample) {
  const response = await fetch(sample.url);
  setImage(await response.blob(), `${sample.name}.png`, sample);
  $("suggestions").replaceChildren(
    ...sample.expressions.map((text) => el("option", { value: text })),
  );
  const expression = $("expression");
  const fromSample = state.config.samples.some((s) => s.expressions.includes(expression.value));
  if (!expression.value || fromSample) expression.value = sample.expressions[0];
  expression.focus();
}

function firstImage(files) {
  return Array.from(files || []).find((file) => file.type.startsWith("image/"));
}

function wireImageInputs() {
  $("image-file").addEventListener("change", (event) => {
    // Any file goes: the server says what is wrong with one that is not an image.
    const file = event.target.files[0];
    if (file) setImage(file, file.name);
  });
  const zone = $("drop-zone");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) setImage(file, file.name || "dropped-image");
  });
  document.addEventListener("paste", (event) => {
    const file = firstImage(event.clipboardData && event.clipboardData.files);
    if (file) {
      event.preventDefault();
      setImage(file, `pasted.${file.type.split("/")[1]}`);
    }
  });
}

// ---------- the request ----------

function showConfidence() {
  $("min-confidence-value").textContent = Number($("min-confidence").value).toFixed(2);
}

// The form as a request; only policy fields that differ from the server's defaults are sent.
function currentRequest() {
  const defaults = state.config ? state.config.policy : {};
  const policy = {};
  const minConfidence = Number($("min-confidence").value);
  if (Math.abs(minConfidence - defaults.min_confidence) > 1e-9) {
    policy.min_confidence = minConfidence;
  }
  const visualCheck = $("visual-check").checked;
  if (visualCheck !== defaults.visual_check) policy.visual_check = visualCheck;
  const k = Number($("sc-k").value);
  if (k !== defaults.self_consistency_k) policy.self_consistency_k = k;
  return {
    expression: $("expression").value.trim(),
    multiple: $("multiple").checked,
    think: $("think").checked,
    output: $("point").checked ? "point" : "box",
    policy: Object.keys(policy).length ? policy : null,
  };
}

function formBody(request, image) {
  const body = new FormData();
  body.append("image", image.blob, image.name);
  body.append("expression", request.expression);
  if (request.multiple) body.append("multiple", "true");
  if (request.think) body.append("think", "true");
  if (request.output === "point") body.append("output", "point");
  body.append("return_raw", "true"); // the page shows the raw output
  if (request.policy) body.append("policy", JSON.stringify(request.policy));
  return body;
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function submit(event) {
  event.preventDefault();
  const request = currentRequest();
  if (!state.image) {
    showProblem({
      title: "No image",
      detail: "Choose, drop or paste an image, or pick a sample scene.",
      code: "no_image",
    });
    return;
  }
  if (!request.expression) {
    showProblem({
      title: "No expression",
      detail: "Type what to find, e.g. “the red circle”.",
      code: "no_expression",
    });
    $("expression").focus();
    return;
  }
  const button = $("submit");
  button.disabled = true;
  $("result").setAttribute("aria-busy", "true");
  setStatus("busy", "Grounding…");
  const entry = { request, image: state.image, at: new Date() };
  const started = performance.now();
  try {
    const response = await fetch("ground", {
      method: "POST",
      body: formBody(request, state.image),
      headers: authHeaders(),
    });
    entry.roundTripMs = performance.now() - started;
    if (response.ok) entry.response = await response.json();
    else entry.problem = await readProblem(response);
  } catch (err) {
    entry.problem = {
      title: "The server could not be reached",
      detail: String(err),
      code: "network_error",
    };
  } finally {
    button.disabled = false;
    $("result").removeAttribute("aria-busy");
  }
  remember(entry);
  show(entry);
  if (entry.problem && entry.problem.status === 401 && !$("api-key-row").hidden) {
    $("api-key").focus();
  }
  // On a phone the result is below the form: bring it into view.
  if ($("result").getBoundingClientRect().top > window.innerHeight * 0.5) {
    $("result").scrollIntoView({ block: "start" });
  }
}

async function readProblem(response) {
  const text = await response.text();
  try {
    const problem = JSON.parse(text);
    if (problem && typeof problem === "object" && problem.title) {
      return { status: response.status, ...problem };
    }
  } catch (err) {
    // not JSON (a proxy's page, say): described from the status line below
  }
  return {
    status: response.status,
    title: response.statusText || "Request failed",
    detail: text.slice(0, 300),
    code: `http_${response.status}`,
  };
}

function show(entry) {
  state.shown = entry;
  if (entry.problem) showProblem(entry.problem);
  else showResponse(entry.response, entry.roundTripMs);
}

// ---------- history ----------

function remember(entry) {
  state.history.unshift(entry);
  for (const dropped of state.history.splice(HISTORY_SIZE)) releaseImage(dropped.image);
  $("history").replaceChildren(...state.history.map(historyItem));
  $("history-empty").hidden = state.history.length > 0;
}

function historyItem(entry) {
  const outcome = entry.problem ? "error" : entry.response.status;
  const tag = entry.problem
    ? `${entry.problem.status || ""} ${entry.problem.code || "error"}`.trim()
    : outcome;
  const title = `${entry.request.expression} (${entry.at.toLocaleTimeString()})`;
  const button = el("button", { type: "button", title }, [
    el("img", { src: entry.image.url, alt: "" }),
    el("span", { class: "what", text: entry.request.expression }),
    el("span", { class: `tag ${outcome}`, text: tag }),
  ]);
  button.addEventListener("click", () => restore(entry));
  return el("li", {}, [button]);
}

function restore(entry) {
  const previous = state.image;
  state.image = entry.image;
  releaseImage(previous);
  $("expression").value = entry.request.expression;
  $("multiple").checked = entry.request.multiple;
  $("think").checked = entry.request.think;
  $("point").checked = entry.request.output === "point";
  $("image-name").textContent = entry.image.name;
  showImage(entry.image, () => show(entry));
}

// ---------- copy as code ----------

async function copySnippet(kind) {
  const origin = `${location.origin}${location.pathname.replace(/\/(playground)?$/, "")}`;
  const entry = state.shown;
  // The request on screen, or (before one is sent) the one the form would send.
  const request = entry && entry.image === state.image ? entry.request : currentRequest();
  const keyRequired = Boolean(state.config && state.config.api_key_required);
  const write = kind === "curl" ? curlSnippet : pythonSnippet;
  const text = write(request, state.image, origin, keyRequired);
  const snippet = $("snippet");
  snippet.textContent = text;
  snippet.dataset.kind = kind;
  snippet.hidden = false;
  let copied = true;
  try {
    await navigator.clipboard.writeText(text);
  } catch (err) {
    copied = false; // no clipboard here (plain http on another host): select the text instead
    window.getSelection().selectAllChildren(snippet);
  }
  $("copy-state").textContent = copied ? "copied to the clipboard" : "selected: press Ctrl+C";
}

// ---------- start ----------

function start() {
  $("ground-form").addEventListener("submit", submit);
  for (const type of ["input", "change"]) {
    $("min-confidence").addEventListener(type, showConfidence);
  }
  $("api-key").addEventListener("input", () =>
    sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim()),
  );
  $("copy-curl").addEventListener("click", () => copySnippet("curl"));
  $("copy-python").addEventListener("click", () => copySnippet("python"));
  window.addEventListener("resize", fitImage);
  wireImageInputs();
  loadReady();
  loadConfig().catch((err) =>
    showProblem({
      title: "The page could not load its settings",
      detail: String(err),
      code: "config_failed",
    }),
  );
}

start();
