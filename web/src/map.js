// The topology map: graphology holds the graph, sigma draws it with WebGL (usable at thousands
// of nodes). The map must show at once and stay still:
//   - positions come from this browser's cache of the last layout, so a reload paints the map as
//     it was, with no layout at all;
//   - a node the cache does not know is put among its placed neighbours (else at a position
//     derived from its name); nothing else moves when nodes come, change or go;
//   - only when most of the map is unknown (a first visit) does ForceAtlas2 run, in a worker
//     (layout-worker.js), after the first paint; its positions are applied a few times a second
//     and cached when it ends.
// No layout iteration ever runs on the main thread.
import Graph from "graphology";
import Sigma from "sigma";

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

const linkKey = (a, b) => `${a}\u0000${b}`;

// The layout cache: one entry, holding only the nodes of the map last shown, so it is bounded by
// the mesh's size. A browser that refuses storage just lays the map out again.
const cacheKey = "x6-map-positions-v1";

function readCache() {
  try {
    const c = JSON.parse(localStorage.getItem(cacheKey) || "null");
    if (!c || !Array.isArray(c.names) || !Array.isArray(c.xy)) return new Map();
    const m = new Map();
    c.names.forEach((n, i) => {
      const x = c.xy[2 * i], y = c.xy[2 * i + 1];
      if (typeof n === "string" && Number.isFinite(x) && Number.isFinite(y)) m.set(n, [x, y]);
    });
    return m;
  } catch { return new Map(); }
}

// When more nodes than this share are unknown, the whole map is laid out again.
const relayoutShare = 0.1;

export class TopologyMap {
  constructor(container, onClickNode) {
    this.graph = new Graph({ type: "undirected" });
    this.container = container;
    this.nodes = new Map(); // name -> {status, score, anomalous}
    this.cache = readCache();
    this.worker = null;
    this.saveTimer = null;
    this.sigma = new Sigma(this.graph, container, {
      settings: { renderLabels: true, renderEdgeLabels: false, labelRenderedSizeThreshold: 9, hideEdgesOnMove: true },
    });
    this.sigma.on("clickNode", ({ node }) => onClickNode(node));
  }

  setNode([name, status, score, anomalous]) {
    const n = { status, score, anomalous: anomalous === 1 };
    this.nodes.set(name, n);
    const attrs = { label: name, color: nodeColor(n), size: status === "online" ? 5 : 4, status };
    if (this.graph.hasNode(name)) {
      this.graph.mergeNodeAttributes(name, attrs);
      return false;
    }
    const p = this.cache.get(name);
    this.graph.addNode(name, { ...attrs, x: p ? p[0] : 0, y: p ? p[1] : 0, placed: !!p });
    return !p;
  }

  dropNode(name) {
    this.nodes.delete(name);
    if (this.graph.hasNode(name)) this.graph.dropNode(name);
  }

  setLink(a, b, rtt, loss, confirmed) {
    if (!this.graph.hasNode(a) || !this.graph.hasNode(b)) return;
    const l = { rtt_ms: rtt, loss_ratio: loss, confirmed: confirmed === 1 };
    const attrs = { color: linkColor(l), size: l.confirmed ? 1.5 : 0.8, rtt, loss };
    const key = linkKey(a, b);
    if (this.graph.hasEdge(key)) this.graph.mergeEdgeAttributes(key, attrs);
    else this.graph.addEdgeWithKey(key, a, b, attrs);
  }

  // load applies the stream's snapshot: the whole map (also after a reconnection). (Sigma 4's
  // setGraph would let the first one be built unwatched and handed over whole, but its index of
  // parallel edges keeps the old graph, so the map is filled in place.)
  load(s) {
    this.loadInto(s);
  }

  loadInto(s) {
    const names = new Set(s.nodes.map((n) => n[0]));
    for (const name of [...this.nodes.keys()]) if (!names.has(name)) this.dropNode(name);
    const fresh = [];
    for (const n of s.nodes) if (this.setNode(n)) fresh.push(n[0]);
    const keep = new Set();
    for (const [ia, ib, rtt, loss, conf] of s.links) {
      const a = s.nodes[ia] && s.nodes[ia][0], b = s.nodes[ib] && s.nodes[ib][0];
      if (a === undefined || b === undefined) continue;
      keep.add(linkKey(a, b));
      this.setLink(a, b, rtt, loss, conf);
    }
    this.graph.forEachEdge((e) => { if (!keep.has(e)) this.graph.dropEdge(e); });
    this.place(fresh);
  }

  // applyDiff applies one of the stream's diffs.
  applyDiff(d) {
    const fresh = [];
    for (const n of d.nodes || []) if (this.setNode(n)) fresh.push(n[0]);
    for (const name of d.gone || []) this.dropNode(name);
    for (const [a, b, rtt, loss, conf] of d.links || []) this.setLink(a, b, rtt, loss, conf);
    for (const [a, b] of d.cut || []) if (this.graph.hasEdge(linkKey(a, b))) this.graph.dropEdge(linkKey(a, b));
    if (fresh.length > 0) this.place(fresh);
  }

  // place gives new nodes a position: beside their placed neighbours when few are new, else the
  // whole map is laid out in the worker.
  place(fresh) {
    if (fresh.length === 0) {
      this.layoutDone();
      return;
    }
    const g = this.graph;
    const relayout = fresh.length > Math.max(10, g.order * relayoutShare);
    // Seeds within the placed nodes' extent, so a stranger lands inside the map, not far off.
    let x0 = 0, y0 = 0, span = 100;
    if (!relayout) {
      let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
      g.forEachNode((_, a) => {
        if (!a.placed) return;
        minX = Math.min(minX, a.x); maxX = Math.max(maxX, a.x); minY = Math.min(minY, a.y); maxY = Math.max(maxY, a.y);
      });
      if (minX <= maxX) { x0 = minX; y0 = minY; span = Math.max(maxX - minX, maxY - minY, 1); }
    }
    for (const name of fresh) g.mergeNodeAttributes(name, { x: x0 + hash01(name, 1) * span, y: y0 + hash01(name, 2) * span });
    if (relayout) {
      this.layoutInWorker();
      return;
    }
    // Two passes: a new node whose neighbours are new too lands beside them once they are placed.
    for (let pass = 0; pass < 2; pass++) {
      for (const name of fresh) {
        let x = 0, y = 0, k = 0;
        g.forEachNeighbor(name, (_, a) => { if (a.placed) { x += a.x; y += a.y; k++; } });
        if (k > 0) g.mergeNodeAttributes(name, { x: x / k + (hash01(name, 3) - 0.5) * span / 50, y: y / k + (hash01(name, 4) - 0.5) * span / 50, placed: true });
      }
    }
    for (const name of fresh) g.setNodeAttribute(name, "placed", true);
    this.saveSoon();
    this.layoutDone();
  }

  // layoutInWorker runs ForceAtlas2 over the whole map in layout-worker.js, from the current
  // positions, and applies what it sends back.
  layoutInWorker() {
    if (this.worker) this.worker.terminate();
    const g = this.graph;
    const names = g.nodes();
    const index = new Map(names.map((n, i) => [n, i]));
    const xy = new Float32Array(2 * names.length);
    names.forEach((n, i) => { xy[2 * i] = g.getNodeAttribute(n, "x"); xy[2 * i + 1] = g.getNodeAttribute(n, "y"); });
    const edges = new Uint32Array(2 * g.size);
    let j = 0;
    g.forEachEdge((_, __, a, b) => { edges[j++] = index.get(a); edges[j++] = index.get(b); });
    this.container.dataset.layout = "running";
    const w = new Worker(new URL("layout-worker.js", document.baseURI), { type: "module" });
    this.worker = w;
    w.onmessage = ({ data }) => {
      if (this.worker !== w) return;
      const pos = data.xy;
      g.updateEachNodeAttributes((n, a) => {
        const i = index.get(n);
        if (i !== undefined) { a.x = pos[2 * i]; a.y = pos[2 * i + 1]; a.placed = true; }
        return a;
      }, { attributes: ["x", "y"] });
      if (data.done) {
        w.terminate();
        this.worker = null;
        // Nodes that came while the worker ran are put beside their neighbours now.
        const late = g.filterNodes((n) => !index.has(n));
        this.saveSoon();
        if (late.length) this.place(late);
        else this.layoutDone();
      }
    };
    w.onerror = () => { this.worker = null; this.layoutDone(); };
    w.postMessage({ xy, edges }, [xy.buffer, edges.buffer]);
  }

  layoutDone() {
    if (this.worker || this.container.dataset.layout === "done") return;
    this.container.dataset.layout = "done";
    performance.mark("x6-layout-done");
  }

  saveSoon() {
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => {
      const names = [], xy = [];
      this.graph.forEachNode((n, a) => {
        if (!a.placed) return;
        names.push(n);
        xy.push(Math.round(a.x * 10) / 10, Math.round(a.y * 10) / 10);
      });
      this.cache = new Map(names.map((n, i) => [n, [xy[2 * i], xy[2 * i + 1]]]));
      try { localStorage.setItem(cacheKey, JSON.stringify({ names, xy })); } catch { /* storage full or refused */ }
    }, 1000);
  }

  kill() {
    if (this.worker) this.worker.terminate();
    clearTimeout(this.saveTimer);
    this.sigma.kill();
  }
}
