// The live view: polls api/status, draws the last minute; the frame itself is the MJPEG stream.
"use strict";
const $ = (id) => document.getElementById(id);
const POLL_MS = 500;

function text(el, value) { el.textContent = value; }

function showField(f) {
  const field = $("field");
  if (!f) { text(field, "–"); return; }
  if (f.error) { text(field, "unreadable frame"); field.className = "big refused"; }
  else if (f.reason) { text(field, f.reason === "out of distribution" ? "out of distribution: not answered" : "refused: " + f.reason); field.className = "big refused"; }
  else { text(field, f["class"] + " " + Math.round(f.confidence * 100) + "%"); field.className = "big"; }
  const table = $("probs");
  table.replaceChildren();
  for (const [label, p] of Object.entries(f.probabilities || {})) {
    const row = table.insertRow();
    text(row.insertCell(), label);
    const bar = row.insertCell(); bar.className = "bar";
    const div = document.createElement("div"); div.style.width = Math.round(p * 100) + "%"; bar.appendChild(div);
    text(row.insertCell(), Math.round(p * 100) + "%");
  }
}

function showCounts(c) {
  const dl = $("counts");
  dl.replaceChildren();
  const add = (k, v) => { const dt = document.createElement("dt"); text(dt, k); const dd = document.createElement("dd"); text(dd, v); dl.append(dt, dd); };
  add("frames seen", c.seen);
  add("usable", c.usable);
  add("answered", c.answered);
  add("out of distribution", c.out_of_distribution);
  for (const [reason, n] of Object.entries(c.refused)) add("refused: " + reason, n);
  add("unreadable", c.unreadable);
}

function plot(history, span) {
  const canvas = $("plot"), g = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  g.clearRect(0, 0, w, h);
  if (!history.length) return;
  const end = history[history.length - 1][0], start = end - span;
  const sorted = history.map((p) => p[2] || 0).sort((a, b) => a - b);
  const lat = Math.max(1, 1.25 * sorted[Math.floor(0.95 * (sorted.length - 1))]);  // a warm-up outlier does not flatten the rest
  const x = (t) => ((t - start) / span) * (w - 40);
  g.strokeStyle = "#ddd"; g.beginPath(); g.moveTo(0, h / 2); g.lineTo(w - 40, h / 2); g.stroke();
  g.fillStyle = "#36c"; g.font = "10px sans-serif"; g.fillText(lat.toFixed(1) + " ms", w - 38, 10);
  for (const [series, colour, scale] of [[1, "#2a7", 1], [2, "#36c", lat]]) {
    g.fillStyle = colour;
    for (const p of history) if (p[series] !== null) g.fillRect(x(p[0]), Math.max(0, h - 2 - (p[series] / scale) * (h - 4)), 2, 2);
  }
}

async function poll() {
  try {
    const response = await fetch("api/status", { cache: "no-store" });
    if (!response.ok) throw new Error(response.status + " " + (await response.text()));
    const s = await response.json();
    text($("state"), s.state === "running" ? "live" : s.state === "ended" ? "run ended (" + (s.stopped_by || "") + ")" : s.state);
    text($("sample-id"), s.sample ? "#" + s.sample : "");
    showField(s.frame);
    if (s.verdict) { text($("verdict"), s.verdict_text.replace(/^sample: /, "")); $("verdict").dataset.decision = s.verdict.decision; }
    if (s.counts) showCounts(s.counts);
    plot(s.history || [], s.history_seconds || 60);
    if (s.model) text($("model"), s.model.name + " · sha256 " + (s.model.sha256 || "").slice(0, 12) + " · edgeleuk " + s.model.edgeleuk);
    $("log").hidden = !s.log;
    showSave(s.labels || [], s.saving);
    if (s.state !== "ended") setTimeout(poll, POLL_MS);
  } catch (err) {
    text($("state"), "disconnected");
    setTimeout(poll, 2000);
  }
}

async function post(path, message) {
  const response = await fetch(path, { method: "POST", headers: { "X-Edgeleuk": "1" } });
  let reply = {};
  try { reply = await response.clone().json(); } catch (err) { /* a plain-text refusal */ }
  text($("message"), response.ok ? (typeof message === "function" ? message(reply) : message)
                                  : "refused: " + response.status + (reply.error ? " (" + reply.error + ")" : ""));
}

// "Save this field as <class>": one button per class of the model, when the run keeps a site set
function showSave(labels, saving) {
  const box = $("save");
  box.hidden = !saving;
  if (!saving) return;
  if (box.dataset.labels !== labels.join("\n")) {
    box.replaceChildren(...labels.map((label) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.label = label;
      button.addEventListener("click", () => post("api/save/" + encodeURIComponent(label),
                                                  (r) => "saved as " + label + ": " + r.file));
      return button;
    }));
    box.dataset.labels = labels.join("\n");
  }
  for (const button of box.children) {
    const n = saving.saved[button.dataset.label] || 0;
    text(button, "Save this field as " + button.dataset.label + (n ? " (" + n + ")" : ""));
  }
}

$("new-sample").addEventListener("click", () => post("api/new-sample", "a new sample starts with the next frame"));
$("stop").addEventListener("click", () => post("api/stop", "stopping"));
poll();
