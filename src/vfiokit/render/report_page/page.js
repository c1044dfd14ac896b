// vfiokit report: lays out the documents embedded below; it computes no group of its own.
// State lives in the URL fragment (#override=...&device=...&alone=...): a click changes the
// fragment and the page redraws from it, so a state can be linked, bookmarked or captured.
"use strict";

const OPTIONS = ["today", "none", "downstream", "multifunction", "downstream,multifunction"];
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

async function load() {
  const text = $("#vfiokit-data").textContent.trim();
  const bin = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}

// Golden-angle hues: neighbouring group numbers get far-apart colours; three lightness steps
// keep groups distinct past a few dozen.
function colour(i) {
  const hue = (i * 137.508) % 360;
  const light = [84, 72, 92][i % 3];
  return { fill: `hsl(${hue.toFixed(2)}, 70%, ${light}%)`, edge: `hsl(${hue.toFixed(2)}, 65%, 32%)` };
}

function short(addr) { return addr.startsWith("0000:") ? addr.slice(5) : addr; }
function full(addr) { return /^[0-9a-f]{2}:/i.test(addr) ? "0000:" + addr.toLowerCase() : addr.toLowerCase(); }

function devName(d) {
  const parts = [d.class_name, d.name].filter(Boolean);
  return parts.length ? parts.join(": ") : "(name unknown)";
}

let D, devices, order, treeEls = new Map();

function state() {
  const p = new URLSearchParams(location.hash.slice(1));
  const override = OPTIONS.includes(p.get("override")) ? p.get("override") : "today";
  return { override, device: p.get("device") ? full(p.get("device")) : null,
           alone: p.get("alone") ? full(p.get("alone")) : null };
}

function setState(change) {
  const s = { ...state(), ...change };
  const p = new URLSearchParams();
  if (s.alone) p.set("alone", s.alone); else if (s.override !== "today") p.set("override", s.override);
  if (s.device) p.set("device", s.device);
  location.hash = p.toString().replace(/%2C/g, ",").replace(/%3A/g, ":");
}

function adviceFor(addr) { return (D.alone.alone || []).find((a) => a.address === addr); }

// The groups to draw: today's (`groups --json`), or a `simulate --json` prediction.
function view(s) {
  let sim = null, why = null;
  if (s.alone) {
    const adv = adviceFor(s.alone);
    if (adv && adv.override) { sim = D.simulate[adv.override]; why = adv; }
  } else if (s.override !== "today") {
    sim = D.simulate[s.override];
  }
  const groupOf = new Map();
  if (sim) {
    for (const g of sim.predicted) for (const a of g.devices) groupOf.set(a, g.number);
  } else {
    for (const g of D.groups.groups) for (const d of g.devices) groupOf.set(d.address, g.number);
  }
  const numbers = [...new Set(groupOf.values())].sort((a, b) => a - b);
  const colours = new Map(numbers.map((n, i) => [n, colour(i)]));
  const assumed = new Map();
  (sim ? sim.assumed_isolation : []).forEach((set, i) => set.devices.forEach((a) => assumed.set(a, i)));
  return { sim, why, groupOf, colours, assumed };
}

function verdictOf(addr) {
  const c = D.checks[addr];
  if (c) return { word: c.verdict, cls: "v-" + c.verdict };
  const d = devices.get(addr);
  if (d && d.flags.includes("bridge")) return { word: "bridge", cls: "v-none" };
  return { word: d && d.iommu_group === null ? "no group" : "not judged", cls: "v-none" };
}

function deviceBox(d) {
  const v = verdictOf(d.address);
  const row = el("div", { class: "row", role: "button", tabindex: "0",
                          "aria-label": `${short(d.address)} ${devName(d)}, verdict ${v.word}` },
    el("span", { class: "gnum" }),
    el("span", { class: "addr" }, short(d.address)),
    el("span", { class: "name" }, devName(d)),
    d.driver ? el("span", { class: "tag" }, "driver " + d.driver) : null,
    ...d.flags.filter((f) => f !== "bridge").map((f) => el("span", { class: "tag" }, f.replace("_", " "))),
    ...d.marks.map((m) => el("span", { class: "tag mark" }, m)),
    el("span", { class: "verdict " + v.cls }, v.word));
  row.addEventListener("click", () => setState({ device: d.address }));
  row.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); setState({ device: d.address }); } });
  const box = el("div", { class: "dev", "data-address": d.address }, row);
  treeEls.set(d.address, box);
  return box;
}

function buildTree() {
  const kids = new Map();
  const roots = new Map();
  for (const a of order) {
    const d = devices.get(a);
    if (d.parent && devices.has(d.parent)) {
      if (!kids.has(d.parent)) kids.set(d.parent, []);
      kids.get(d.parent).push(a);
    } else {
      const bus = a.slice(0, 7);
      if (!roots.has(bus)) roots.set(bus, []);
      roots.get(bus).push(a);
    }
  }
  const walk = (a) => {
    const box = deviceBox(devices.get(a));
    const below = kids.get(a);
    if (below) box.append(el("div", { class: "kids" }, ...below.map(walk)));
    return box;
  };
  const tree = $("#tree");
  for (const [bus, list] of roots) {
    tree.append(el("section", { class: "bus", "aria-label": "PCI root bus " + bus },
      el("div", { class: "bus-head" }, `PCI root bus ${bus} (host bridge)`),
      el("div", { class: "kids" }, ...list.map(walk))));
  }
}

// Without topology (a pasted listing) the boxes are the groups themselves, redrawn per view.
function drawGroups(v) {
  const tree = $("#tree");
  tree.replaceChildren(el("p", { class: "muted" },
    "This source does not say which bridge each device sits behind (a pasted listing has no topology): " +
    "the page shows the groups alone."));
  treeEls = new Map();
  const byGroup = new Map();
  for (const a of order) {
    const n = v.groupOf.has(a) ? v.groupOf.get(a) : null;
    if (!byGroup.has(n)) byGroup.set(n, []);
    byGroup.get(n).push(a);
  }
  const keys = [...byGroup.keys()].sort((a, b) => (a === null) - (b === null) || a - b);
  for (const n of keys) {
    tree.append(el("section", { class: "grp", "aria-label": n === null ? "no group" : "IOMMU group " + n },
      el("div", { class: "grp-head" }, n === null ? "Not in any group" : "IOMMU group " + n),
      ...byGroup.get(n).map((a) => deviceBox(devices.get(a)))));
  }
}

function paint(v) {
  for (const [a, box] of treeEls) {
    const n = v.groupOf.get(a);
    const c = n === undefined ? null : v.colours.get(n);
    box.style.background = c ? c.fill : "#fff";
    box.style.borderColor = c ? c.edge : "#999";
    box.dataset.group = n === undefined ? "" : String(n);
    box.querySelector(":scope > .row > .gnum").textContent = n === undefined ? "—" : "G" + n;
    box.classList.toggle("assumed", v.assumed.has(a));
    // The verdicts are `check`'s on today's groups: say so while a prediction is drawn.
    box.querySelector(":scope > .row > .verdict").textContent = (v.sim ? "today: " : "") + verdictOf(a).word;
  }
}

function list(items) { return el("ul", {}, ...items.map((t) => el("li", {}, t))); }

function drawStatus(s, v) {
  const st = $("#status");
  st.replaceChildren();
  if (s.alone) {
    const adv = adviceFor(s.alone);
    const head = el("p", {}, el("strong", {}, short(s.alone)), " alone: ");
    if (!adv) head.append("no suggestion was computed for this device (run vfiokit report --alone " + short(s.alone) + ").");
    else if (adv.already_alone) head.append("already alone in its IOMMU group without any override.");
    else if (adv.override) {
      head.append("smallest override: ", el("code", {}, "pcie_acs_override=" + adv.override));
      if (adv.also_affected.length) head.append("; it also changes the groups of " + adv.also_affected.map(short).join(" "));
      st.append(head, el("p", { class: "warn" }, "Assumed, not enforced: " + adv.dma_peers.map(short).join(" ") +
        " can still reach it by peer-to-peer DMA."));
    } else {
      head.append(adv.known ? "no ACS override can make it alone:" : "cannot tell:");
      st.append(head, list(adv.blockers));
    }
    if (!st.contains(head)) st.prepend(head);
  }
  if (!v.sim) {
    st.append(el("p", {}, `Groups as the kernel formed them (${D.groups.groups.length} groups, from ${D.groups.source}).`));
    return;
  }
  const sim = v.sim;
  const p = el("p", {}, "Predicted with ", el("code", {}, "pcie_acs_override=" + sim.override),
    ` (groups today were formed with: ${sim.baseline}): ${sim.predicted.length} groups.`);
  st.append(p);
  const changes = [
    ...sim.splits.map((x) => `group ${x.current} splits into ${x.into.length} groups: ${x.into.join(", ")}`),
    ...sim.merges.map((x) => `groups ${x.from.join(", ")} merge into group ${x.predicted}`)];
  st.append(changes.length ? list(changes) : el("p", { class: "muted" }, "no group changes"));
  sim.assumed_isolation.forEach((set) => {
    st.append(el("div", { class: "assumed" },
      el("p", { class: "warn" }, "Isolation assumed, not enforced: the kernel only assumes that these devices cannot " +
        "reach each other; they can by peer-to-peer DMA that the IOMMU never sees (outlined in red dashes)."),
      el("p", { class: "mono" }, set.devices.map(short).join(" ")),
      el("p", { class: "muted" }, `one hardware group cut into ${set.groups.length}; assumed isolating: ` +
        (set.because.map((b) => `${short(b.address)} (${b.option})`).join(", ") || "none"))));
  });
  const ks = sim.kernel_support;
  st.append(el("p", { class: ks.patched === false ? "warn" : "muted" },
    "pcie_acs_override exists only in patched kernels (Proxmox VE's carries the patch). This host: " + ks.evidence + "."));
}

function drawDetails(s, v) {
  const box = $("#details");
  for (const e of treeEls.values()) e.classList.remove("selected");
  if (!s.device || !devices.has(s.device)) return;
  treeEls.get(s.device)?.classList.add("selected");
  const d = devices.get(s.device);
  const out = [el("h3", {}, short(d.address) + " " + devName(d))];
  const now = d.iommu_group, then = v.groupOf.get(d.address);
  out.push(el("p", {}, now === null ? "In no IOMMU group." : `IOMMU group ${now} today` +
    (v.sim ? `; group ${then} predicted with pcie_acs_override=${v.sim.override}.` : ".")));
  const c = D.checks[d.address];
  if (!c) {
    out.push(el("p", { class: "muted" }, d.flags.includes("bridge")
      ? "A bridge: check does not judge bridges; Proxmox leaves them bound to the host."
      : "Not judged: vfiokit check judges devices in an IOMMU group."));
  } else {
    out.push(el("p", {}, "Verdict: ", el("span", { class: "verdict v-" + c.verdict }, c.verdict), " — " + c.summary));
    const leaving = c.members.filter((m) => m.leaves_host && m.address !== d.address);
    if (leaving.length) {
      out.push(el("h4", {}, "Leaves the host with it"));
      out.push(list(leaving.map((m) => `${short(m.address)} ${devName(m)}` +
        (m.critical ? " — the host needs it" : "") +
        (m.needs.length ? ": " + m.needs.map((n) => n.loss + " (" + n.detail + ")").join("; ") : ""))));
    }
    if (c.reasons.length) {
      out.push(el("h4", {}, "Why"));
      out.push(list(c.reasons.map((r) => r.text)));
    }
  }
  box.replaceChildren(...out);
}

function drawTable(v) {
  const body = $("#table tbody");
  const rows = [...order].sort((a, b) => {
    const ga = v.groupOf.has(a) ? v.groupOf.get(a) : Infinity, gb = v.groupOf.has(b) ? v.groupOf.get(b) : Infinity;
    return ga - gb || (a < b ? -1 : a > b ? 1 : 0);
  });
  body.replaceChildren(...rows.map((a) => {
    const d = devices.get(a), n = v.groupOf.get(a);
    return el("tr", { "data-address": a },
      el("td", {}, n === undefined ? "none" : String(n)), el("td", { class: "addr" }, short(a)),
      el("td", {}, devName(d)), el("td", {}, d.driver || (d.driver === "" ? "none" : "unknown")),
      el("td", {}, [...d.flags.filter((f) => f !== "bridge"), ...d.marks].join("; ")),
      el("td", {}, verdictOf(a).word));
  }));
  $("#table caption").textContent = v.sim
    ? `Predicted with pcie_acs_override=${v.sim.override}; verdicts are today's (vfiokit check).`
    : "Today's groups and vfiokit check verdicts.";
}

function drawControls() {
  const fs = $("#override");
  for (const o of OPTIONS) {
    const input = el("input", { type: "radio", name: "override", value: o, id: "o-" + o });
    input.addEventListener("change", () => setState({ override: o, alone: null }));
    fs.append(el("label", { for: "o-" + o }, input, " " + (o === "today" ? "today (the kernel's groups)" : o)));
  }
  const sel = $("#alone");
  for (const adv of D.alone.alone || []) {
    const d = devices.get(adv.address);
    sel.append(el("option", { value: adv.address }, `${short(adv.address)} ${d ? devName(d) : ""}`));
  }
  if (!(D.alone.alone || []).length) $("#alone-label").hidden = true;
  sel.addEventListener("change", () => setState({ alone: sel.value || null }));
}

function drawFacts() {
  const m = D.meta;
  const facts = [["Source", m.source], ["Host", [m.hostname, m.board].filter(Boolean).join(", ") || "unknown"],
    ["Kernel", m.kernel || "unknown"], ["Command line", m.cmdline || "unknown"],
    ["Devices", `${devices.size} PCI functions in ${D.groups.groups.length} IOMMU groups`],
    ["vfiokit", m.vfiokit]];
  $("#facts").replaceChildren(...facts.flatMap(([k, val]) => [el("dt", {}, k), el("dd", {}, val)]));
  $("#version").textContent = m.vfiokit;
  const notes = [...D.groups.notes];
  if (m.alone_skipped) notes.push(`the "make alone" suggestion was computed for no device: ${m.alone_skipped} candidates; ` +
    "name the ones you want with vfiokit report --alone ADDR");
  if (notes.length) $("#notes").replaceChildren(el("h2", {}, "Notes"), list(notes));
}

function redraw() {
  const s = state();
  const v = view(s);
  if (!D.meta.tree_known) drawGroups(v);
  paint(v);
  for (const r of document.querySelectorAll("#override input")) r.checked = !s.alone && r.value === s.override;
  $("#alone").value = s.alone && adviceFor(s.alone) ? s.alone : "";
  drawStatus(s, v);
  drawDetails(s, v);
  drawTable(v);
  document.body.dataset.view = s.alone ? "alone:" + s.alone : s.override;
}

load().then((data) => {
  D = data;
  devices = new Map();
  for (const g of D.groups.groups) for (const d of g.devices) devices.set(d.address, d);
  for (const d of [...D.groups.ungrouped, ...D.groups.group_unknown]) devices.set(d.address, d);
  order = [...devices.keys()].sort();
  drawFacts();
  drawControls();
  if (D.meta.tree_known) buildTree();
  window.addEventListener("hashchange", redraw);
  redraw();
  document.body.dataset.ready = "1";
  // bench/bench_report.py opens the page as report.html?timing and reads when this line is logged.
  if (location.search === "?timing") console.log("vfiokit: drawn");
}).catch((e) => {
  $("#status").replaceChildren(el("p", { class: "warn" }, "This page could not read its data: " + e));
});
