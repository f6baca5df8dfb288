// boxguard playground: plain browser JavaScript, no build step, same-origin requests only.
"use strict";

(() => {
  const KEY_STORAGE = "boxguard.apiKey";
  const HISTORY_SIZE = 8;
  const READY_RETRY_MS = 2000;
  const MAX_UPSCALE = 2;

  const $ = (id) => document.getElementById(id);
  const state = {
    config: null, // GET playground/config
    image: null, // {blob, name, url, sample}
    history: [], // [{request, image, response | problem, roundTripMs, at}]
    shown: null, // the history entry on screen
  };

  function el(tag, props = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) node.append(child);
    return node;
  }

  // ---------- server state ----------

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
    const samples = $("samples");
    for (const sample of config.samples) {
      const button = el("button", { type: "button", class: "sample", "data-sample": sample.name }, [
        el("img", { src: sample.url, alt: "" }),
        el("span", { text: sample.title }),
      ]);
      button.setAttribute("aria-pressed", "false");
      button.addEventListener("click", () => pickSample(sample));
      samples.append(button);
    }
  }

  // ---------- image input ----------

  function releaseImage(image) {
    const inUse = state.image === image || state.history.some((entry) => entry.image === image);
    if (image && !inUse) URL.revokeObjectURL(image.url);
  }

  function setImage(blob, name, sample = null) {
    const previous = state.image;
    state.image = { blob, name, url: URL.createObjectURL(blob), sample };
    releaseImage(previous);
    for (const button of document.querySelectorAll(".sample")) {
      button.setAttribute("aria-pressed", String(sample !== null && button.dataset.sample === sample.name));
    }
    $("image-name").textContent = `${name} (${formatBytes(blob.size)})`;
    showImage(state.image, null);
    clearResult("Image ready: type what to find and press Enter.");
  }

  async function pickSample(sample) {
    const response = await fetch(sample.url);
    setImage(await response.blob(), `${sample.name}.png`, sample);
    const suggestions = $("suggestions");
    suggestions.replaceChildren(...sample.expressions.map((text) => el("option", { value: text })));
    const expression = $("expression");
    const fromSample = state.config.samples.some((s) => s.expressions.includes(expression.value));
    if (!expression.value || fromSample) expression.value = sample.expressions[0];
    expression.focus();
  }

  function imageFrom(files) {
    return Array.from(files || []).find((file) => file.type.startsWith("image/")) || (files && files[0]);
  }

  function wireImageInputs() {
    $("image-file").addEventListener("change", (event) => {
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
      const file = imageFrom(event.dataTransfer.files);
      if (file) setImage(file, file.name || "dropped-image");
    });
    document.addEventListener("paste", (event) => {
      const file = imageFrom(event.clipboardData && event.clipboardData.files);
      if (file && file.type.startsWith("image/")) {
        event.preventDefault();
        setImage(file, "pasted.png");
      }
    });
  }

  // ---------- the request ----------

  function showConfidence() {
    $("min-confidence-value").textContent = Number($("min-confidence").value).toFixed(2);
  }

  function currentRequest() {
    const defaults = state.config ? state.config.policy : {};
    const policy = {};
    const minConfidence = Number($("min-confidence").value);
    if (Math.abs(minConfidence - defaults.min_confidence) > 1e-9) policy.min_confidence = minConfidence;
    if ($("visual-check").checked !== defaults.visual_check) policy.visual_check = $("visual-check").checked;
    const k = Number($("sc-k").value);
    if (k !== defaults.self_consistency_k) policy.self_consistency_k = k;
    return {
      expression: $("expression").value.trim(),
      multiple: $("multiple").checked,
      think: $("think").checked,
      policy: Object.keys(policy).length ? policy : null,
    };
  }

  function authHeaders() {
    const key = $("api-key").value.trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  async function submit(event) {
    event.preventDefault();
    const request = currentRequest();
    if (!state.image) {
      showProblem({ title: "No image", detail: "Choose, drop or paste an image, or pick a sample scene.", code: "no_image" });
      return;
    }
    if (!request.expression) {
      showProblem({ title: "No expression", detail: "Type what to find, e.g. “the red circle”.", code: "no_expression" });
      $("expression").focus();
      return;
    }
    const body = new FormData();
    body.append("image", state.image.blob, state.image.name);
    body.append("expression", request.expression);
    if (request.multiple) body.append("multiple", "true");
    if (request.think) body.append("think", "true");
    body.append("return_raw", "true"); // the page shows the raw output
    if (request.policy) body.append("policy", JSON.stringify(request.policy));

    const button = $("submit");
    button.disabled = true;
    $("result").setAttribute("aria-busy", "true");
    setStatus("busy", "Grounding…");
    const entry = { request, image: state.image, at: new Date() };
    const started = performance.now();
    try {
      const response = await fetch("ground", { method: "POST", body, headers: authHeaders() });
      entry.roundTripMs = performance.now() - started;
      if (response.ok) entry.response = await response.json();
      else entry.problem = await readProblem(response);
    } catch (err) {
      entry.problem = { title: "The server could not be reached", detail: String(err), code: "network_error" };
    } finally {
      button.disabled = false;
      $("result").removeAttribute("aria-busy");
    }
    remember(entry);
    show(entry);
    // On a phone the result is below the form: bring it into view.
    const top = $("result").getBoundingClientRect().top;
    if (top > window.innerHeight * 0.5) $("result").scrollIntoView({ block: "start" });
  }

  async function readProblem(response) {
    const text = await response.text();
    try {
      const problem = JSON.parse(text);
      if (problem && typeof problem === "object" && problem.title) return { status: response.status, ...problem };
    } catch (err) {
      // not JSON: described below from the status line
    }
    return {
      status: response.status,
      title: response.statusText || "Request failed",
      detail: text.slice(0, 300),
      code: `http_${response.status}`,
    };
  }

  // ---------- showing a result ----------

  function setStatus(kind, text) {
    const status = $("status");
    status.className = `status ${kind}`;
    status.textContent = text;
  }

  function clearResult(message) {
    state.shown = null;
    setStatus("idle", message);
    $("problem").hidden = true;
    $("details").hidden = true;
    $("image-info").textContent = "";
  }

  function showImage(image, onLoad) {
    const preview = $("preview");
    $("frame").hidden = false;
    $("boxes").replaceChildren();
    preview.onload = () => {
      fitImage();
      if (onLoad) onLoad();
    };
    preview.onerror = () => {
      $("frame").hidden = true;
      $("image-info").textContent = "The browser cannot display this file; the server will say what it makes of it.";
      if (onLoad) onLoad();
    };
    preview.src = image.url;
  }

  function fitImage() {
    // Small images are scaled up (at most 2x) so their boxes are easy to see.
    const preview = $("preview");
    if (!preview.naturalWidth) return;
    const room = $("stage").clientWidth;
    const maxHeight = Math.max(240, window.innerHeight * 0.5);
    const scale = Math.min(room / preview.naturalWidth, maxHeight / preview.naturalHeight, MAX_UPSCALE);
    preview.style.width = `${Math.floor(preview.naturalWidth * scale)}px`;
  }

  function show(entry) {
    state.shown = entry;
    if (entry.problem) showProblem(entry.problem);
    else showResponse(entry);
  }

  function showProblem(problem) {
    setStatus("error", problem.status ? `Error ${problem.status}: ${problem.title}` : problem.title);
    $("problem-title").textContent = problem.status ? `${problem.status} ${problem.title}` : problem.title;
    $("problem-detail").textContent = problem.detail || "";
    $("problem-code").textContent = problem.code || "";
    $("problem-errors").replaceChildren(
      ...(problem.errors || []).map((error) => el("li", { text: `${(error.loc || []).join(".")}: ${error.msg || JSON.stringify(error)}` })),
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

  function showResponse(entry) {
    const response = entry.response;
    $("problem").hidden = true;
    setStatus(response.status, statusText(response));
    const info = response.image;
    $("image-info").textContent =
      `${info.width}×${info.height} px` +
      (info.model_width ? ` · model frame ${info.model_width}×${info.model_height}` : "") +
      ` · ${response.model}`;

    // Accepted boxes solid; an abstained answer's candidates dashed.
    const shown = response.status === "accepted"
      ? response.detections.map((box) => ({ box, kind: "verified" }))
      : response.candidates.map((box) => ({ box, kind: "candidate" }));
    drawBoxes(shown, info);
    fillBoxTable(shown);
    fillChecks(response.checks);
    fillReasons(response);
    fillTimings(response.timings_ms, entry.roundTripMs);
    $("think-section").hidden = !response.think;
    $("think-text").textContent = response.think || "";
    $("raw-section").hidden = response.raw_output == null;
    $("raw-section").open = false;
    $("raw-text").textContent = response.raw_output || "";
    $("details").hidden = false;
  }

  function drawBoxes(shown, info) {
    const layer = $("boxes");
    layer.replaceChildren();
    shown.forEach(({ box, kind }, index) => {
      const [x1, y1, x2, y2] = box.bbox;
      const node = el("div", { class: `box ${kind === "candidate" ? "candidate" : "verified"}`, "data-index": String(index) });
      node.style.left = `${(x1 / info.width) * 100}%`;
      node.style.top = `${(y1 / info.height) * 100}%`;
      node.style.width = `${((x2 - x1) / info.width) * 100}%`;
      node.style.height = `${((y2 - y1) / info.height) * 100}%`;
      if (y1 / info.height < 0.08) node.classList.add("below");
      node.title = `${kind}: ${box.label || "?"} ${formatConfidence(box.confidence)}`;
      node.append(el("span", { class: "box-label", text: `${box.label || "?"} ${formatConfidence(box.confidence)}` }));
      node.addEventListener("mouseenter", () => highlight(index, true));
      node.addEventListener("mouseleave", () => highlight(index, false));
      layer.append(node);
    });
  }

  function highlight(index, on) {
    for (const node of document.querySelectorAll(`[data-index="${index}"]`)) node.classList.toggle("hot", on);
  }

  function fillBoxTable(shown) {
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
        el("td", { class: "num", text: `[${box.bbox.map((v) => v.toFixed(1)).join(", ")}]` }),
      ]);
      row.addEventListener("mouseenter", () => highlight(index, true));
      row.addEventListener("mouseleave", () => highlight(index, false));
      body.append(row);
    });
  }

  function fillChecks(checks) {
    const body = $("checks-table").tBodies[0];
    body.replaceChildren(
      ...checks.map((check) =>
        el("tr", { "data-check": check.name }, [
          el("td", { text: check.name + (check.fatal ? "" : " (reported only)") }),
          el("td", { class: check.passed ? "pass" : "fail", text: check.passed ? "passed" : "failed" }),
          el("td", { class: "num", text: check.score == null ? "—" : check.score.toFixed(3) }),
          el("td", { text: check.detail || "" }),
        ]),
      ),
    );
  }

  function fillReasons(response) {
    const section = $("reasons-section");
    section.hidden = response.status !== "abstained";
    const details = Object.fromEntries(response.checks.map((check) => [check.name, check.detail]));
    $("reasons").replaceChildren(
      ...response.reasons.map((reason) =>
        el("li", { "data-reason": reason }, [el("strong", { text: reason }), details[reason] ? `: ${details[reason]}` : ""]),
      ),
    );
  }

  function fillTimings(timings, roundTripMs) {
    const items = Object.entries(timings || {}).map(([stage, ms]) => el("li", { text: `${stage} ${ms.toFixed(1)} ms` }));
    if (roundTripMs != null) items.push(el("li", { text: `round trip ${roundTripMs.toFixed(0)} ms` }));
    $("timings").replaceChildren(...items);
  }

  // ---------- history ----------

  function remember(entry) {
    state.history.unshift(entry);
    for (const dropped of state.history.splice(HISTORY_SIZE)) releaseImage(dropped.image);
    const list = $("history");
    list.replaceChildren(
      ...state.history.map((item) => {
        const outcome = item.problem ? "error" : item.response.status;
        const label = item.problem ? `${item.problem.status || ""} ${item.problem.code || "error"}`.trim() : outcome;
        const button = el("button", { type: "button", title: `${item.request.expression} (${item.at.toLocaleTimeString()})` }, [
          el("img", { src: item.image.url, alt: "" }),
          el("span", { class: "what", text: item.request.expression }),
          el("span", { class: `tag ${outcome}`, text: label }),
        ]);
        button.addEventListener("click", () => restore(item));
        return el("li", {}, [button]);
      }),
    );
    $("history-empty").hidden = state.history.length > 0;
  }

  function restore(entry) {
    const previous = state.image;
    state.image = entry.image;
    releaseImage(previous);
    $("expression").value = entry.request.expression;
    $("multiple").checked = entry.request.multiple;
    $("think").checked = entry.request.think;
    $("image-name").textContent = entry.image.name;
    showImage(entry.image, () => show(entry));
  }

  // ---------- copy as code ----------

  const shellQuote = (text) => `'${text.replace(/'/g, `'\\''`)}'`;

  function pythonValue(value) {
    if (value === true) return "True";
    if (value === false) return "False";
    if (value === null) return "None";
    if (typeof value === "number") return String(value);
    if (typeof value === "string") return JSON.stringify(value);
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pythonValue(v)}`).join(", ")}}`;
  }

  function curlSnippet(request, image, origin) {
    const lines = [];
    const name = image ? image.name : "image.png";
    if (image && image.sample) lines.push(`curl -so ${shellQuote(name)} ${shellQuote(`${origin}/${image.sample.url}`)}`);
    const parts = [`curl -s ${shellQuote(`${origin}/ground`)}`];
    if (state.config && state.config.api_key_required) parts.push(`-H "Authorization: Bearer $BOXGUARD_API_KEY"`);
    parts.push(`-F ${shellQuote(`image=@${name}`)}`, `-F ${shellQuote(`expression=${request.expression}`)}`);
    if (request.multiple) parts.push("-F multiple=true");
    if (request.think) parts.push("-F think=true");
    if (request.policy) parts.push(`-F ${shellQuote(`policy=${JSON.stringify(request.policy)}`)}`);
    lines.push(parts.join(" \\\n  "));
    return lines.join("\n");
  }

  function pythonSnippet(request, image, origin) {
    const lines = ["from boxguard.clients import Client", ""];
    let source = JSON.stringify(image ? image.name : "image.png");
    if (image && image.sample) {
      lines.splice(0, 0, "import httpx");
      lines.push(`image = httpx.get(${JSON.stringify(`${origin}/${image.sample.url}`)}).content`);
      source = "image";
    }
    const args = [source, JSON.stringify(request.expression)];
    if (request.multiple) args.push("multiple=True");
    if (request.think) args.push("think=True");
    if (request.policy) args.push(`policy=${pythonValue(request.policy)}`);
    const auth = state.config && state.config.api_key_required ? "  # api_key= or BOXGUARD_API_KEY" : "";
    lines.push(
      `with Client(${JSON.stringify(origin)}) as client:${auth}`,
      `    result = client.ground(${args.join(", ")})`,
      "print(result.status, result.detections, result.reasons)",
    );
    return lines.join("\n");
  }

  async function copySnippet(kind) {
    const origin = `${location.origin}${location.pathname.replace(/\/(playground)?$/, "")}`;
    const entry = state.shown;
    const request = entry && entry.image === state.image ? entry.request : currentRequest();
    const text = kind === "curl" ? curlSnippet(request, state.image, origin) : pythonSnippet(request, state.image, origin);
    const snippet = $("snippet");
    snippet.textContent = text;
    snippet.dataset.kind = kind;
    snippet.hidden = false;
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch (err) {
      copied = false; // no clipboard permission (e.g. plain http on another host): select it instead
    }
    if (!copied) window.getSelection().selectAllChildren(snippet);
    $("copy-state").textContent = copied ? "copied to the clipboard" : "selected: press Ctrl+C to copy";
  }

  // ---------- helpers and start ----------

  function formatConfidence(value) {
    return value == null ? "" : value.toFixed(2);
  }

  function formatBytes(bytes) {
    return bytes < 1024 * 1024 ? `${Math.ceil(bytes / 1024)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  }

  function start() {
    $("ground-form").addEventListener("submit", submit);
    for (const type of ["input", "change"]) $("min-confidence").addEventListener(type, showConfidence);
    $("api-key").addEventListener("input", () => sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim()));
    $("copy-curl").addEventListener("click", () => copySnippet("curl"));
    $("copy-python").addEventListener("click", () => copySnippet("python"));
    window.addEventListener("resize", fitImage);
    wireImageInputs();
    loadReady();
    loadConfig().catch((err) => showProblem({ title: "The page could not load its settings", detail: String(err), code: "config_failed" }));
  }

  start();
})();
