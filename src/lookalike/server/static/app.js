"use strict";
// The lookalike search page: query by a dropped/pasted/picked image, by text, or by a result.
const $ = (id) => document.getElementById(id);
const state = { file: null, queryId: null, explain: false };

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function call(url, options = {}) {
  const resp = await fetch(url, options);
  if (!resp.ok) {
    let detail = resp.statusText;
    try { detail = (await resp.json()).detail || detail; } catch (_) { /* not JSON */ }
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    throw new Error(`${resp.status}: ${detail}`);
  }
  return resp.status === 204 ? null : resp.json();
}

const k = () => Math.max(1, Math.min(200, parseInt($("k").value, 10) || 12));

async function loadStats() {
  try {
    const s = await call("/stats");
    state.explain = !!s.explain;
    $("stats").textContent = `${s.images} images · pipeline ${s.pipeline}`;
  } catch (e) { $("stats").textContent = `stats unavailable (${e.message})`; }
}

async function run(label, request) {
  setStatus(`searching ${label}…`);
  try {
    const res = await request();
    render(res);
    setStatus(`${res.results.length} results for ${label} in ${res.took_ms.toFixed(1)} ms`);
  } catch (e) {
    $("results").replaceChildren();
    setStatus(`search failed: ${e.message}`, true);
  }
}

function searchFile(file) {
  state.file = file;
  state.queryId = null;
  $("add-btn").disabled = false;
  const preview = $("preview");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  const form = new FormData();
  form.append("image", file, file.name || "pasted.png");
  return run(`the image ${file.name || "pasted"}`, () => call(`/search?k=${k()}${$("rotate").checked ? "&rotate=true" : ""}`, { method: "POST", body: form }));
}

function searchId(id) {
  state.file = null;
  state.queryId = id;
  $("add-btn").disabled = true;
  $("preview").src = `/images/${id}/thumb`;
  $("preview").hidden = false;
  return run(`image #${id}`, () => call(`/search?id=${id}&k=${k()}`));
}

function searchText(text) {
  state.queryId = null;
  $("preview").hidden = true;
  return run(`“${text}”`, () => call(`/search?text=${encodeURIComponent(text)}&k=${k()}`));
}

function link(text, onClick) {
  const a = document.createElement("a");
  a.href = "#";
  a.className = "link";
  a.textContent = text;
  a.addEventListener("click", (ev) => { ev.preventDefault(); ev.stopPropagation(); onClick(); });
  return a;
}

function show(src, alt, wide = false) {
  $("viewer-img").classList.toggle("wide", wide);
  $("viewer-img").src = src;
  $("viewer-img").alt = alt;
  $("viewer").showModal();
}

function render(res) {
  const cards = res.results.map((r) => {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.id = r.id;
    const name = r.path.split("/").pop();
    const img = document.createElement("img");
    img.src = `/images/${r.id}/thumb`;
    img.alt = name;
    img.loading = "lazy";
    img.title = "search by this image";
    img.addEventListener("click", () => searchId(r.id));
    const meta = document.createElement("div");
    meta.className = "meta";
    const rank = document.createElement("span");
    rank.textContent = `#${r.rank}`;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = r.score.toFixed(4);
    meta.append(rank, score);
    const label = document.createElement("div");
    label.className = "name";
    label.textContent = name;
    label.title = r.path;
    const links = document.createElement("div");
    links.className = "links";
    links.append(link("full size", () => show(`/images/${r.id}`, name)));
    if (state.explain && state.queryId !== null && state.queryId !== r.id) {
      const q = state.queryId;
      links.append(link("why?", () => show(`/explain?query_id=${q}&id=${r.id}`, `matches ${q} ↔ ${r.id}`, true)));
    }
    card.append(img, meta, label, links);
    return card;
  });
  $("results").replaceChildren(...cards);
}

async function addToIndex() {
  if (!state.file) return;
  const token = $("token").value.trim();
  sessionStorage.setItem("lookalike-token", token);
  const form = new FormData();
  form.append("image", state.file, state.file.name || "pasted.png");
  try {
    const res = await call("/images", { method: "POST", body: form, headers: { Authorization: `Bearer ${token}` } });
    setStatus(res.added ? `indexed as image #${res.id}` : `already indexed as image #${res.id}`);
    loadStats();
  } catch (e) { setStatus(`adding failed: ${e.message}`, true); }
}

function firstImage(items) {
  for (const it of items || []) {
    const f = it.kind === "file" ? it.getAsFile() : it;
    if (f && f.type && f.type.startsWith("image/")) return f;
  }
  return null;
}

function init() {
  const drop = $("drop");
  drop.addEventListener("click", (ev) => { if (!ev.target.closest("label, input")) $("file").click(); });
  drop.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") $("file").click(); });
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const f = firstImage(ev.dataTransfer.files);
    f ? searchFile(f) : setStatus("that is not an image file", true);
  });
  document.addEventListener("paste", (ev) => {
    const f = firstImage(ev.clipboardData && ev.clipboardData.items);
    if (f) searchFile(f);
  });
  $("file").addEventListener("change", (ev) => { if (ev.target.files[0]) searchFile(ev.target.files[0]); });
  $("text-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("text").value.trim();
    if (t) searchText(t);
  });
  $("token").value = sessionStorage.getItem("lookalike-token") || "";
  $("add-btn").addEventListener("click", addToIndex);
  loadStats();
}

document.addEventListener("DOMContentLoaded", init);
