// Live status: polls the JSON behind the page once a second and updates it in place.
// Written for mailha; no library. Text is set with textContent only (never HTML).
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live) { return; }
  const source = live.dataset.source;
  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    row.appendChild(td);
  }
  function show(s) {
    document.getElementById("active").textContent = s.active || "none";
    document.getElementById("epoch").textContent = String(s.epoch);
    document.getElementById("fip").textContent = (s.floating_ip_holder || []).join(", ") || "-";
    document.getElementById("paused").textContent = s.paused ? "on" : "off";
    document.getElementById("updated").textContent = new Date().toISOString().slice(11, 19) + " UTC";
    const body = document.getElementById("nodes");
    body.replaceChildren();
    for (const n of s.nodes) {
      const row = document.createElement("tr");
      for (const v of [n.name, n.address, n.state, n.health, n.epoch, n.says]) { cell(row, v); }
      body.appendChild(row);
    }
  }
  async function tick() {
    try {
      const reply = await fetch(source, { credentials: "same-origin", cache: "no-store" });
      if (reply.ok) { show(await reply.json()); }
      else { document.getElementById("updated").textContent = "status unavailable (" + reply.status + ")"; }
    } catch (e) {
      document.getElementById("updated").textContent = "status unavailable";
    }
    setTimeout(tick, 1000);
  }
  tick();
})();
