// The topology map: graphology holds the graph, sigma draws it with WebGL (usable at thousands
// of nodes), ForceAtlas2 lays it out once. Positions are kept across updates: a node that appears
// is placed among its neighbours and nothing else moves, so the map does not jump on every report.
import Graph from "graphology";
import Sigma from "sigma";
import forceAtlas2 from "graphology-layout-forceatlas2";

export const nodeColors = {
  online: "#2e9d5b", stale: "#e0a100", silent: "#b8bfcc", revoked: "#5d6470", anomalous: "#d0342c",
};

// Link colour: loss first (any loss hurts more than latency), then round-trip time.
export function linkColor(l) {
  if (l.loss_ratio >= 0.05 || l.rtt_ms >= 250) return "#d0342c";
  if (l.loss_ratio >= 0.01 || l.rtt_ms >= 80) return "#e08a00";
  return l.confirmed ? "#7f9bb8" : "#c3cfdc";
}

export function nodeColor(n) {
  if (n.status !== "online") return nodeColors[n.status] || nodeColors.silent;
  if (n.anomalous) return nodeColors.anomalous;
  if (typeof n.score === "number") {
    // From green (score 0) towards orange as the score nears the threshold.
    const t = Math.max(0, Math.min(1, n.score));
    const r = Math.round(46 + t * (224 - 46)), g = Math.round(157 + t * (138 - 157)), b = Math.round(91 * (1 - t));
    return `rgb(${r},${g},${b})`;
  }
  return nodeColors.online;
}

// hash01 maps a name to [0, 1) deterministically, for first positions.
function hash01(s, seed) {
  let h = 2166136261 ^ seed;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return ((h >>> 0) % 100000) / 100000;
}

export class TopologyMap {
  constructor(container, onClickNode) {
    this.graph = new Graph({ type: "undirected" });
    this.container = container;
    this.laidOut = false;
    this.sigma = new Sigma(this.graph, container, {
      renderLabels: true,
      labelRenderedSizeThreshold: 9,
      hideEdgesOnMove: true,
      zIndex: true,
    });
    this.sigma.on("clickNode", ({ node }) => onClickNode(node));
    this.firstPaint = null;
    this.sigma.once("afterRender", () => { this.firstPaint = performance.now(); });
  }

  // update applies a topology document; it returns whether the graph's shape changed.
  update(topo) {
    const g = this.graph;
    const seen = new Set();
    const fresh = [];
    for (const n of topo.nodes) {
      seen.add(n.name);
      const attrs = { label: n.name, color: nodeColor(n), size: n.status === "online" ? 5 : 4,
        status: n.status, zIndex: n.status === "online" ? 1 : 0 };
      if (g.hasNode(n.name)) g.mergeNodeAttributes(n.name, attrs);
      else {
        g.addNode(n.name, { ...attrs, x: hash01(n.name, 1) * 100, y: hash01(n.name, 2) * 100 });
        fresh.push(n.name);
      }
    }
    for (const name of g.nodes()) if (!seen.has(name)) g.dropNode(name);
    const links = new Set();
    for (const l of topo.links) {
      if (!g.hasNode(l.a) || !g.hasNode(l.b)) continue;
      const key = `${l.a}\u0000${l.b}`;
      links.add(key);
      const attrs = { color: linkColor(l), size: l.confirmed ? 1.5 : 0.8, rtt: l.rtt_ms, loss: l.loss_ratio };
      if (g.hasEdge(key)) g.mergeEdgeAttributes(key, attrs);
      else g.addEdgeWithKey(key, l.a, l.b, attrs);
    }
    for (const e of g.edges()) if (!links.has(e)) g.dropEdge(e);
    if (!this.laidOut && g.order > 0) {
      this.layoutAll();
    } else {
      for (const name of fresh) this.placeNear(name);
    }
    return fresh.length > 0;
  }

  // layoutAll runs ForceAtlas2 once for a bounded number of iterations (Barnes-Hut above a few
  // hundred nodes), a few per animation frame after the first paint, so the map shows at once and
  // the page stays responsive while it settles.
  layoutAll() {
    this.laidOut = true;
    const g = this.graph;
    const settings = forceAtlas2.inferSettings(g);
    settings.barnesHutOptimize = g.order > 300;
    let left = g.order > 500 ? 60 : 150;
    const perFrame = g.order > 500 ? 2 : 10;
    const step = () => {
      if (this.killed) return;
      forceAtlas2.assign(g, { iterations: Math.min(perFrame, left), settings });
      left -= perFrame;
      if (left > 0) requestAnimationFrame(step);
      else this.container.dataset.layout = "done";
    };
    requestAnimationFrame(() => requestAnimationFrame(step));
  }

  // placeNear puts a new node at the centre of its placed neighbours, slightly offset.
  placeNear(name) {
    const g = this.graph;
    let x = 0, y = 0, k = 0;
    g.forEachNeighbor(name, (_, a) => { x += a.x; y += a.y; k++; });
    if (k > 0) g.mergeNodeAttributes(name, { x: x / k + hash01(name, 3) * 4 - 2, y: y / k + hash01(name, 4) * 4 - 2 });
  }

  kill() { this.killed = true; this.sigma.kill(); }
}
