// The fleet heatmap: every GPU one cell, nodes as columns grouped by rack, one band per leaf switch.
// Shared by the console (served as a file) and the MCP App (inlined into its ui:// resource).
"use strict";

const COLOURS = {
  h: "#2e9d4f", // healthy
  d: "#e0b000", // degraded
  i: "#f08c00", // isolated
  f: "#d62828", // failed
  r: "#3a7bd5", // in repair
  s: "#9aa5b1", // spare
};
const NAMES = { h: "healthy", d: "degraded", i: "isolated", f: "failed", r: "in repair", s: "spare" };

// Where each node's GPUs sit on the canvas: nodes flow left to right as columns of cells, a gap
// between racks, a new band (with its label) for each leaf switch.
function layout(map, width) {
  const total = map.states.length || 1;
  const cell = Math.max(3, Math.min(14, Math.floor(Math.sqrt((width * 360) / total))));
  const tallest = Math.max(1, ...map.nodes.map((n) => n.gpus));
  const lineHeight = tallest * cell + 3;
  const rows = [];
  let x = 0, y = 0, offset = 0, leaf = null, rack = null;
  for (const node of map.nodes) {
    if (node.leaf !== leaf) {
      if (leaf !== null) y += lineHeight + 6;
      rows.push({ label: `leaf ${node.leaf}`, x: 0, y: y });
      y += 14;
      leaf = node.leaf; rack = null; x = 0;
    } else if (node.rack !== rack) {
      x += Math.max(2, cell >> 1);
    }
    if (x + cell > width) { x = 0; y += lineHeight; }
    rack = node.rack;
    rows.push({ node: node, x: x, y: y, offset: offset });
    offset += node.gpus;
    x += cell;
  }
  return { rows: rows, cell: cell, height: y + lineHeight + 2 };
}

function draw(canvas, map) {
  const started = performance.now();
  const width = canvas.parentElement.clientWidth || 1200;
  const placed = layout(map, width);
  canvas.width = width;
  canvas.height = placed.height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = "11px sans-serif";
  const inner = placed.cell > 4 ? placed.cell - 1 : placed.cell;
  for (const row of placed.rows) {
    if (row.label !== undefined) {
      ctx.fillStyle = "#555";
      ctx.fillText(row.label, row.x, row.y + 11);
      continue;
    }
    for (let g = 0; g < row.node.gpus; g++) {
      ctx.fillStyle = COLOURS[map.states[row.offset + g]] || "#000";
      ctx.fillRect(row.x, row.y + g * placed.cell, inner, inner);
    }
  }
  const ms = performance.now() - started;
  canvas.dataset.renderMs = ms.toFixed(2);
  canvas.dataset.gpus = String(map.states.length);
  canvas.dataset.version = String(Number(canvas.dataset.version || 0) + 1);
  const note = document.getElementById("render-time");
  if (note) note.textContent = `${map.states.length} GPUs drawn in ${ms.toFixed(1)} ms`;
  return placed;
}

function counts(map) {
  const by = {};
  for (const c of map.states) by[c] = (by[c] || 0) + 1;
  return Object.keys(NAMES).filter((k) => by[k]).map((k) => `${by[k]} ${NAMES[k]}`).join(" · ");
}

// The GPU under the pointer, for the caption and for tests.
function cellAt(placed, map, px, py) {
  for (const row of placed.rows) {
    if (!row.node || px < row.x || px >= row.x + placed.cell) continue;
    const g = Math.floor((py - row.y) / placed.cell);
    if (g >= 0 && g < row.node.gpus) {
      return { node: row.node.name, rack: row.node.rack, leaf: row.node.leaf, gpu: g, state: map.states[row.offset + g] };
    }
  }
  return null;
}

function cellOf(placed, map, node, gpu) {
  const row = placed.rows.find((r) => r.node && r.node.name === node);
  return row ? { x: row.x + 1, y: row.y + gpu * placed.cell + 1, state: map.states[row.offset + gpu] } : null;
}

