// The map's layout worker: ForceAtlas2 (graphology-layout-forceatlas2's own iteration) over the
// node and edge matrices the library's layout builds, off the main thread. It receives positions
// and links once, sends positions back every reportEvery milliseconds and at the end, then stops.
// It never touches the page.
import forceAtlas2 from "graphology-layout-forceatlas2";
import defaults from "graphology-layout-forceatlas2/defaults.js";
import iterate from "graphology-layout-forceatlas2/iterate.js";

// The library's matrix layout: properties per node and per edge (helpers.js).
const perNode = 10, perEdge = 3;
const iterations = 200;
const reportEvery = 400;

self.onmessage = ({ data }) => {
  const { xy, edges } = data;
  const order = xy.length / 2;
  const settings = { ...defaults, ...forceAtlas2.inferSettings(order), barnesHutOptimize: order > 300 };
  const nodes = new Float32Array(order * perNode);
  for (let i = 0; i < order; i++) {
    const j = i * perNode;
    nodes[j] = xy[2 * i];
    nodes[j + 1] = xy[2 * i + 1];
    nodes[j + 6] = 1; // mass: 1 + degree, below
    nodes[j + 7] = 1; // convergence
    nodes[j + 8] = 1; // size
  }
  const links = new Float32Array((edges.length / 2) * perEdge);
  for (let e = 0; e < edges.length / 2; e++) {
    const a = edges[2 * e] * perNode, b = edges[2 * e + 1] * perNode;
    nodes[a + 6]++;
    nodes[b + 6]++;
    links[e * perEdge] = a;
    links[e * perEdge + 1] = b;
    links[e * perEdge + 2] = 1; // weight
  }
  const send = (done) => {
    const out = new Float32Array(2 * order);
    for (let i = 0; i < order; i++) { out[2 * i] = nodes[i * perNode]; out[2 * i + 1] = nodes[i * perNode + 1]; }
    self.postMessage({ xy: out, done }, [out.buffer]);
  };
  let last = performance.now();
  for (let it = 0; it < iterations; it++) {
    iterate(settings, nodes, links);
    if (performance.now() - last >= reportEvery) {
      send(false);
      last = performance.now();
    }
  }
  send(true);
};
