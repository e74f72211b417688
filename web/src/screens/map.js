// The map screen: the topology, live from the server's event stream, and a list of nodes.
import { el, fmtTime } from "../dom.js";
import { get } from "../api.js";
import { TopologyMap, nodeColor } from "../map.js";

function render(main, ctx) {
  const container = el("div", { id: "map" });
  const counts = el("p", { id: "map-counts" });
  const live = el("p", { class: "live", id: "map-live" }, "connecting…");
  const filter = el("input", { id: "node-filter", placeholder: "filter nodes", type: "search" });
  const list = el("ul", { class: "nodes", id: "node-list" });
  const legend = el("div", { class: "legend" },
    el("div", {}, el("span", { class: "dot s-online" }), "online (greener: lower anomaly score)"),
    el("div", {}, el("span", { class: "dot s-anomalous" }), "anomalous (detector)"),
    el("div", {}, el("span", { class: "dot s-stale" }), "stale"),
    el("div", {}, el("span", { class: "dot s-silent" }), "never reported"),
    el("div", {}, el("span", { class: "dot s-revoked" }), "revoked"),
    el("div", {}, el("span", { class: "line l-good" }), "link: low loss and RTT"),
    el("div", {}, el("span", { class: "line l-warn" }), "loss ≥ 1 % or RTT ≥ 80 ms"),
    el("div", {}, el("span", { class: "line l-bad" }), "loss ≥ 5 % or RTT ≥ 250 ms"));
  main.appendChild(el("div", { class: "map-wrap" }, container,
    el("aside", { class: "side" }, el("h1", {}, "Mesh"), counts, live, legend, filter, list)));

  const map = new TopologyMap(container, (name) => ctx.navigate(`#/node/${encodeURIComponent(name)}`));
  // The graph on its element, for the browser tests to compare with the server's topology.
  container.x6graph = map.graph;
  const items = new Map();
  let es = null;

  function apply(topo) {
    map.update(topo);
    const by = { online: 0, stale: 0, silent: 0, revoked: 0 };
    const seen = new Set();
    for (const n of topo.nodes) {
      by[n.status] = (by[n.status] || 0) + 1;
      seen.add(n.name);
      let li = items.get(n.name);
      if (!li) {
        const dot = el("span", { class: "dot" });
        const link = el("a", { href: `#/node/${encodeURIComponent(n.name)}` }, n.name);
        const st = el("span", { class: "note" });
        li = el("li", { dataset: { node: n.name } }, dot, link, " ", st);
        li._dot = dot;
        li._st = st;
        items.set(n.name, li);
        list.appendChild(li);
      }
      li.dataset.status = n.status;
      li._dot.style.background = nodeColor(n);
      li._st.textContent = n.status + (typeof n.score === "number" ? ` · score ${n.score.toFixed(2)}` : "");
      li.hidden = filter.value !== "" && !n.name.includes(filter.value);
    }
    for (const [name, li] of items) if (!seen.has(name)) { li.remove(); items.delete(name); }
    counts.textContent = `${topo.nodes.length} nodes (${by.online} online, ${by.stale} stale, ${by.silent} silent, ${by.revoked} revoked), ${topo.links.length} links`;
    container.dataset.nodes = String(map.graph.order);
    container.dataset.links = String(map.graph.size);
    live.textContent = `live · ${fmtTime(topo.generated_at)}`;
  }

  filter.addEventListener("input", () => {
    for (const [name, li] of items) li.hidden = filter.value !== "" && !name.includes(filter.value);
  });

  ctx.onLeave(() => { if (es) es.close(); map.kill(); });
  return get("/api/v1/console/topology").then((topo) => {
    performance.mark("x6-topology-fetched");
    apply(topo);
    requestAnimationFrame(() => {
      performance.mark("x6-map-painted");
      container.dataset.painted = "true";
    });
    es = new EventSource("/api/v1/console/events");
    es.addEventListener("topology", (ev) => apply(JSON.parse(ev.data)));
    es.addEventListener("error", () => { live.textContent = "reconnecting…"; });
  });
}

export const mapScreen = { id: "map", title: "Map", role: "viewer", nav: true, render };
