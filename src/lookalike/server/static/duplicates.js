"use strict";
// The duplicates review page: groups side by side, keep/remove per file, moving the removed ones out.
const $ = (id) => document.getElementById(id);
const choices = new Map(); // image id -> "keep" | "remove"
let groups = [];

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
  return resp.json();
}

const kb = (n) => n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.round(n / 1e3)} kB`;
const day = (t) => new Date(t * 1000).toISOString().slice(0, 10);

function member(m) {
  const box = document.createElement("div");
  box.className = "member";
  box.dataset.id = m.id;
  const img = document.createElement("img");
  img.src = `/images/${m.id}/thumb`;
  img.alt = m.path;
  img.loading = "lazy";
  const info = document.createElement("div");
  info.className = "info";
  const what = m.kind ? `${m.kind} ${m.score.toFixed(3)}` : "centre";
  const line1 = document.createElement("div");
  line1.textContent = `${m.width}×${m.height} · ${kb(m.size)} · ${day(m.mtime)}`;
  const line2 = document.createElement("div");
  line2.className = "kind";
  line2.textContent = what;
  const path = document.createElement("div");
  path.className = "path";
  path.textContent = m.path;
  path.title = m.path;
  info.append(line1, line2, path);
  const choice = document.createElement("div");
  choice.className = "choice";
  for (const action of ["keep", "remove"]) {
    const label = document.createElement("label");
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = `m${m.id}`;
    radio.value = action;
    radio.checked = choices.get(m.id) === action;
    radio.addEventListener("change", () => { choices.set(m.id, action); refresh(); });
    label.append(radio, ` ${action}`);
    choice.append(label);
  }
  box.append(img, info, choice);
  return box;
}

function refresh() {
  for (const box of document.querySelectorAll(".member")) {
    box.classList.toggle("remove", choices.get(Number(box.dataset.id)) === "remove");
  }
  const n = [...choices.values()].filter((a) => a === "remove").length;
  $("remove-btn").disabled = n === 0;
  $("remove-btn").textContent = `Move ${n} file${n === 1 ? "" : "s"} marked “remove” out`;
}

function render(res) {
  groups = res.groups;
  choices.clear();
  const items = groups.map((g, gi) => {
    const box = document.createElement("section");
    box.className = "group";
    const h = document.createElement("h2");
    h.textContent = `Group ${gi + 1} · ${g.members.length} images`;
    const row = document.createElement("div");
    row.className = "members";
    for (const m of g.members) {
      choices.set(m.id, m.action);
      row.append(member(m));
    }
    box.append(h, row);
    return box;
  });
  $("groups").replaceChildren(...items);
  $("summary").textContent = `${res.images} images · ${groups.length} groups`;
  refresh();
}

async function find(ev) {
  if (ev) ev.preventDefault();
  setStatus("looking for duplicates…");
  try {
    const res = await call(`/duplicates?preset=${$("preset").value}&keep=${$("keep").value}`);
    render(res);
    setStatus(`${res.groups.length} groups, ${res.duplicates} files suggested for removal, in ${res.seconds.toFixed(1)} s`);
  } catch (e) {
    setStatus(`failed: ${e.message}`, true);
  }
}

async function removeMarked() {
  const ids = [...choices].filter(([, a]) => a === "remove").map(([id]) => id);
  for (const g of groups) {
    if (g.members.every((m) => choices.get(m.id) === "remove")) {
      setStatus("keep at least one image of every group", true);
      return;
    }
  }
  try {
    const res = await call("/duplicates/remove", {
      method: "POST",
      headers: { "Authorization": `Bearer ${$("token").value}`, "Content-Type": "application/json" },
      body: JSON.stringify({ ids }),
    });
    await find();
    setStatus(`moved ${res.moved} files into ${res.folder}/`);
  } catch (e) {
    setStatus(`not moved: ${e.message}`, true);
  }
}

$("dup-form").addEventListener("submit", find);
$("remove-btn").addEventListener("click", removeMarked);
find();
