// gpu-aiops fleet console: the heatmap canvas and the live feed (server-sent events).
// No framework and no build step; loaded by every console page (the CSP allows only this file).
"use strict";

// Someone is writing in this part of the page (a comment for an approval): leave it alone.
function busy(element) {
  if (element.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return true;
  return [...element.querySelectorAll("input[type=text]")].some((input) => input.value !== "");
}

async function refreshFragments() {
  for (const section of document.querySelectorAll("[data-fragment]")) {
    if (busy(section)) continue;
    const response = await fetch(`/console/fragments/${section.dataset.fragment}`, { credentials: "same-origin" });
    const html = response.ok ? await response.text() : null;
    if (html !== null && !busy(section)) section.innerHTML = html; // typing may have begun meanwhile
  }
  const incident = document.querySelector("[data-incident-page]");
  if (incident && !busy(incident)) {
    const response = await fetch(location.pathname, { credentials: "same-origin" });
    if (response.ok) {
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html").querySelector("[data-incident-page]");
      if (fresh && !busy(incident)) incident.replaceWith(fresh);
    }
  }
  document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
}

function start() {
  const canvas = document.getElementById("heatmap");
  const onIncidentPage = document.querySelector("[data-incident-page]");
  if (!canvas && !onIncidentPage) return; // the login page
  let map = null, placed = null;
  const feed = new EventSource("/console/events");
  feed.addEventListener("map", (event) => {
    map = JSON.parse(event.data);
    if (!canvas) return;
    placed = draw(canvas, map);
    const summary = document.getElementById("fleet-counts");
    if (summary) summary.textContent = counts(map);
  });
  feed.addEventListener("states", (event) => {
    if (!map) return;
    map.states = JSON.parse(event.data).states;
    if (!canvas) return;
    placed = draw(canvas, map);
    const summary = document.getElementById("fleet-counts");
    if (summary) summary.textContent = counts(map);
  });
  feed.addEventListener("incidents", () => { refreshFragments(); });
  if (canvas) {
    canvas.addEventListener("mousemove", (event) => {
      if (!placed) return;
      const box = canvas.getBoundingClientRect();
      const hit = cellAt(placed, map, event.clientX - box.left, event.clientY - box.top);
      const info = document.getElementById("cell-info");
      if (info && hit) info.textContent = `${hit.node} GPU ${hit.gpu} · ${NAMES[hit.state]} · rack ${hit.rack} · leaf ${hit.leaf}`;
    });
    window.addEventListener("resize", () => { if (map) placed = draw(canvas, map); });
    // For the browser tests and for anyone scripting the page: where a GPU is drawn, and its state.
    window.aiopsConsole = {
      cell: (node, gpu) => (placed && map ? cellOf(placed, map, node, gpu) : null),
      redraw: () => (map ? (placed = draw(canvas, map), Number(canvas.dataset.renderMs)) : null),
    };
  }
}

document.addEventListener("DOMContentLoaded", start);
