"use strict";
// The lookalike page: the collection (newest first) and searches by a dropped/pasted/picked image,
// a text, a composed query or a result ("similar"), narrowed by filters, a page at a time as the
// list scrolls. Only thumbnails are shown; originals are opened on request.
const $ = (id) => document.getElementById(id);
const GALLERY_PAGE = 48;
const state = { file: null, queryId: null, explain: false, text: false, view: null, offset: 0, done: true,
                loading: false, seen: new Set(), generation: 0, observer: null };

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

// -- filters ---------------------------------------------------------------------------------------
const FIELDS = [["folder", "f-folder"], ["camera", "f-camera"], ["date_from", "f-date-from"], ["date_to", "f-date-to"],
                ["min_width", "f-min-width"], ["min_height", "f-min-height"], ["keyword", "f-keyword"]];

function filterParams() {
  const p = new URLSearchParams();
  if ($("filters").hidden) return p;
  for (const [name, id] of FIELDS) {
    const v = $(id).value.trim();
    if (v && !$(id).closest("[hidden]")) p.set(name, v);
  }
  const types = [...document.querySelectorAll("#f-types input:checked")].map((c) => c.value);
  if (types.length) p.set("type", types.join(","));
  return p;
}

function option(select, value, label) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label || value;
  select.append(o);
}

async function loadFilters() {
  let f;
  try { f = await call("/filters"); } catch (_) { return; }  // a server without filters: none shown
  for (const d of f.folders || []) option($("f-folder"), d, d && d !== "." ? d : "(top folder)");
  for (const c of f.cameras || []) option($("f-camera"), c);
  for (const t of f.types || []) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = t;
    label.append(box, ` ${t}`);
    $("f-types").append(label);
  }
  $("f-types").hidden = !(f.types || []).length;
  for (const id of ["f-date-from", "f-date-to"]) {
    if (f.date_min) $(id).min = String(f.date_min).slice(0, 10);
    if (f.date_max) $(id).max = String(f.date_max).slice(0, 10);
  }
  if (f.width_max) $("f-min-width").max = f.width_max;
  if (f.height_max) $("f-min-height").max = f.height_max;
  $("f-keyword-label").hidden = !state.text;
  $("filters").hidden = false;
}

function countFilters() {
  const n = [...filterParams().keys()].length;
  $("filter-count").textContent = n ? `(${n} on)` : "";
}

// -- views: what the list shows, fetched a page at a time ------------------------------------------
function galleryView() {
  return { label: "the collection", fetch: (offset) => {
    const p = filterParams();
    p.set("offset", offset);
    p.set("limit", GALLERY_PAGE);
    return call(`/images?${p}`).then((r) => ({ items: r.items, total: r.total, more: offset + r.items.length < r.total }));
  } };
}

function searchView(label, params, upload = null) {
  return { label, search: true, fetch: (offset) => {
    const p = filterParams();
    for (const [key, v] of Object.entries(params)) p.set(key, v);
    p.set("k", k());
    p.set("offset", offset);
    const request = upload ? call(`/search?${p}`, { method: "POST", body: upload() }) : call(`/search?${p}`);
    return request.then((r) => ({ items: r.results, took: r.took_ms, more: r.results.length >= k() }));
  } };
}

function show(view) {
  state.view = view;
  state.offset = 0;
  state.done = false;
  state.seen = new Set();
  state.generation += 1;  // a page still on its way for the previous view is dropped when it comes
  state.loading = false;
  $("results").replaceChildren();
  window.scrollTo(0, 0);
  return more();
}

async function more() {
  if (!state.view || state.loading || state.done) return;
  const view = state.view, generation = state.generation;
  state.loading = true;
  setStatus(`${view.search ? "searching" : "loading"} ${view.label}…`);
  try {
    const page = await view.fetch(state.offset);
    if (generation !== state.generation) return;  // another view was chosen meanwhile
    const fresh = page.items.filter((it) => !state.seen.has(it.id));
    fresh.forEach((it) => state.seen.add(it.id));
    $("results").append(...fresh.map((it, i) => card(it, state.offset + i + 1, view.search)));
    state.offset += page.items.length;
    state.done = !page.more || !fresh.length;  // nothing new: the end (or a server without offset)
    const shown = $("results").children.length;
    if (view.search) {
      setStatus(`${shown} results for ${view.label}` + (page.took !== undefined ? ` in ${page.took.toFixed(1)} ms` : ""));
    } else {
      setStatus(`${page.total} images${filterParams().toString() ? " (filtered)" : ""}, newest first · ${shown} shown`);
    }
  } catch (e) {
    if (generation !== state.generation) return;
    state.done = true;
    if (!state.offset) $("results").replaceChildren();
    setStatus(`${view.search ? "search" : "loading"} failed: ${e.message}`, true);
  } finally {
    if (generation === state.generation) {
      state.loading = false;
      $("more").hidden = state.done;
    }
  }
  // observed afresh: its first report says whether the end is still in view (the page not full, or
  // scrolled down while the page was loading), which a change-only observer would not repeat
  if (!state.done && state.observer) {
    state.observer.unobserve($("more-wrap"));
    state.observer.observe($("more-wrap"));
  }
}

// -- queries -------------------------------------------------------------------------------------
function searchFile(file) {
  state.file = file;
  state.queryId = null;
  $("add-btn").disabled = false;
  const preview = $("preview");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  const form = () => {
    const f = new FormData();
    f.append("image", file, file.name || "pasted.png");
    return f;
  };
  const params = $("rotate").checked ? { rotate: "true" } : {};
  return show(searchView(`the image ${file.name || "pasted"}`, params, form));
}

function searchId(id) {
  state.file = null;
  state.queryId = id;
  $("add-btn").disabled = true;
  $("preview").src = `/thumbs/${id}`;
  $("preview").hidden = false;
  return show(searchView(`image #${id}`, { id }));
}

function searchText(text) {
  state.queryId = null;
  $("preview").hidden = true;
  return show(searchView(`“${text}”`, { text }));
}

function searchComposed(q) {
  state.queryId = null;
  $("preview").hidden = true;
  return show(searchView(`“${q}”`, { q }));
}

function gallery() {
  state.queryId = null;
  state.file = null;
  $("preview").hidden = true;
  $("add-btn").disabled = true;
  return show(galleryView());
}

function rerun() {
  countFilters();
  if (state.view) show(state.view);
}

// -- cards ---------------------------------------------------------------------------------------
function link(text, onClick, cls = "link") {
  const a = document.createElement("a");
  a.href = "#";
  a.className = cls;
  a.textContent = text;
  a.addEventListener("click", (ev) => { ev.preventDefault(); ev.stopPropagation(); onClick(); });
  return a;
}

function showLarge(src, alt, wide = false) {
  $("viewer-img").classList.toggle("wide", wide);
  $("viewer-img").src = src;
  $("viewer-img").alt = alt;
  $("viewer").showModal();
}

function details(it) {
  const parts = [];
  if (it.width && it.height) parts.push(`${it.width}×${it.height}`);
  if (it.taken) parts.push(String(it.taken).slice(0, 10));
  if (it.camera) parts.push(it.camera);
  return parts.join(" · ");
}

function card(it, rank, scored) {
  const c = document.createElement("div");
  c.className = "card";
  c.dataset.id = it.id;
  const name = it.path.split("/").pop();
  const img = document.createElement("img");
  img.src = it.thumb || `/thumbs/${it.id}`;
  img.alt = name;
  img.decoding = "async";
  img.title = "find similar images";
  img.addEventListener("click", () => searchId(it.id));
  const meta = document.createElement("div");
  meta.className = "meta";
  const left = document.createElement("span");
  left.textContent = scored ? `#${it.rank || rank}` : (details(it).split(" · ")[0] || "");
  meta.append(left);
  if (scored) {
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = it.score.toFixed(4);
    meta.append(score);
  }
  const label = document.createElement("div");
  label.className = "name";
  label.textContent = name;
  label.title = [it.path, details(it)].filter(Boolean).join("\n");
  const links = document.createElement("div");
  links.className = "links";
  links.append(link("similar", () => searchId(it.id), "link similar"));
  links.append(link("full size", () => showLarge(`/images/${it.id}`, name)));
  if (scored && state.explain && state.queryId !== null && state.queryId !== it.id) {
    const q = state.queryId;
    links.append(link("why?", () => showLarge(`/explain?query_id=${q}&id=${it.id}`, `matches ${q} ↔ ${it.id}`, true)));
  }
  c.append(img, meta, label, links);
  return c;
}

// -- adding --------------------------------------------------------------------------------------
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

async function loadStats() {
  try {
    const s = await call("/stats");
    state.explain = !!s.explain;
    state.text = !!s.text;
    $("stats").textContent = `${s.images} images · pipeline ${s.pipeline}`;
  } catch (e) { $("stats").textContent = `stats unavailable (${e.message})`; }
}

function firstImage(items) {
  for (const it of items || []) {
    const f = it.kind === "file" ? it.getAsFile() : it;
    if (f && f.type && f.type.startsWith("image/")) return f;
  }
  return null;
}

async function init() {
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
    t ? searchText(t) : gallery();
  });
  $("q-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("q").value.trim();
    if (q) searchComposed(q);
  });
  $("gallery-btn").addEventListener("click", gallery);
  $("filter-form").addEventListener("submit", (ev) => { ev.preventDefault(); rerun(); });
  $("filter-form").addEventListener("change", countFilters);
  $("filter-form").addEventListener("reset", () => setTimeout(rerun, 0));
  $("more").addEventListener("click", more);
  state.observer = new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) more(); },
                                           { rootMargin: "600px 0px" });
  state.observer.observe($("more-wrap"));
  $("token").value = sessionStorage.getItem("lookalike-token") || "";
  $("add-btn").addEventListener("click", addToIndex);
  await loadStats();
  await loadFilters();
  const asked = new URLSearchParams(location.search);  // links such as /?id=12, /?q=..., /?text=...
  if (asked.get("k")) $("k").value = asked.get("k");
  if (asked.get("id")) searchId(parseInt(asked.get("id"), 10));
  else if (asked.get("q")) { $("q").value = asked.get("q"); searchComposed(asked.get("q")); }
  else if (asked.get("text")) { $("text").value = asked.get("text"); searchText(asked.get("text")); }
  else gallery();
}

document.addEventListener("DOMContentLoaded", init);
