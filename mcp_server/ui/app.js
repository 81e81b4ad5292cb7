// The MCP App side of the gpu-aiops views (fleet heatmap, incident card): JSON-RPC over postMessage
// with the host (ui/initialize, then tool results; tools/call for fleet_map).
"use strict";

const pending = new Map();
let nextId = 1;

function send(message) { window.parent.postMessage({ jsonrpc: "2.0", ...message }, "*"); }

function request(method, params) {
  const id = nextId++;
  send({ id: id, method: method, params: params });
  return new Promise((resolve, reject) => pending.set(id, { resolve: resolve, reject: reject }));
}

function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  return el;
}

async function showFleet(result) {
  const app = document.getElementById("app");
  const health = (result && result.structuredContent) || {};
  app.replaceChildren(text("h1", health.headline || "Fleet"));
  for (const line of health.attention || []) app.appendChild(text("p", line, "muted"));
  try {
    const answer = await request("tools/call", { name: "fleet_map", arguments: {} });
    const map = answer.structuredContent;
    const canvas = document.getElementById("heatmap");
    canvas.hidden = false;
    const placed = draw(canvas, map);
    window.aiopsApp = { cell: (node, gpu) => cellOf(placed, map, node, gpu) };
    app.appendChild(text("p", counts(map)));
  } catch (error) {
    app.appendChild(text("p", `The heatmap needs the host to call fleet_map: ${error.message || error}`, "muted"));
  }
  send({ method: "ui/notifications/size-changed", params: { height: document.body.scrollHeight } });
}

function showIncident(result) {
  const i = (result && result.structuredContent) || {};
  const app = document.getElementById("app");
  app.replaceChildren(text("h1", `${i.id || "incident"} · ${i.status || ""}`, i.severity));
  app.appendChild(text("p", i.title || i.kind || ""));
  const rc = i.root_cause;
  app.appendChild(text("p", rc ? `Root cause: ${rc.entity_type} ${rc.entity_id} (${Math.round(rc.confidence * 100)}%)` : "Root cause not established"));
  app.appendChild(text("p", `GPU-hours lost: ${(i.gpu_hours_lost || 0).toFixed(2)}`));
  if (i.plan) app.appendChild(text("p", `Plan (${i.plan.planner}): ${i.plan.disposition} — ${i.plan.rationale}`));
  for (const a of i.pending_approvals || []) app.appendChild(text("p", `Waiting for approval ${a.id}: ${a.summary}`, "warning"));
  app.appendChild(text("h2", "Timeline"));
  const list = document.createElement("ol");
  for (const t of i.timeline || []) list.appendChild(text("li", `${t.time} ${t.what} ${t.detail || ""}`));
  app.appendChild(list);
  send({ method: "ui/notifications/size-changed", params: { height: document.body.scrollHeight } });
}

window.addEventListener("message", (event) => {
  const message = event.data;
  if (!message || message.jsonrpc !== "2.0") return;
  if (message.id !== undefined && pending.has(message.id)) {
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.error) waiter.reject(new Error(message.error.message));
    else waiter.resolve(message.result);
    return;
  }
  if (message.method === "ui/notifications/tool-result") {
    if (document.body.dataset.view === "fleet") showFleet(message.params);
    else showIncident(message.params);
  }
});

request("ui/initialize", {
  protocolVersion: "2026-01-26",
  appInfo: { name: "gpu-aiops", version: "0.1.0" },
  appCapabilities: {},
}).then(() => send({ method: "ui/notifications/initialized", params: {} }));
