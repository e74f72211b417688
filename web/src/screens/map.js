// The map screen: the topology, live from the server's event stream (a snapshot, then diffs),
// and a list of nodes.
import { el, fmtTime } from "../dom.js";
import { get, APIError } from "../api.js";
import { TopologyMap, nodeColor } from "../map.js";

function render(main, ctx) {
  // The stream opens first, so the server builds the snapshot while the map is being set up.
  performance.mark("x6-topology-requested");
  let es = null;
  const pending = [];
  let handle = (kind, data) => pending.push([kind, data]);
  let retry = null;
  function open() {
    es = new EventSource("/api/v1/console/events");
    es.addEventListener("snapshot", (ev) => handle("snapshot", ev.data));
    es.addEventListener("diff", (ev) => handle("diff", ev.data));
    es.addEventListener("error", () => {
      live.textContent = "reconnecting…";
      if (es.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
      // Refused (an ended session, too many streams): find out which, and try again later.
      get("/api/v1/console/session").then(() => { retry = setTimeout(open, 5000); },
        (e) => { if (e instanceof APIError && e.status === 401) ctx.expired(); else retry = setTimeout(open, 5000); });
    });
  }
  const live = el("p", { class: "live", id: "map-live" }, "connecting…");
  open();

  const container = el("div", { id: "map" });
  const counts = el("p", { id: "map-counts" });
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
  performance.mark("x6-sigma-ready");
  // The graph on its element, for the browser tests to compare with the server's topology.
  Object.defineProperty(container, "x6graph", { get: () => map.graph });
  const items = new Map();

  function item(name) {
    let li = items.get(name);
    if (!li) {
      const dot = el("span", { class: "dot" });
      const link = el("a", { href: `#/node/${encodeURIComponent(name)}` }, name);
      const st = el("span", { class: "note" });
      li = el("li", { dataset: { node: name } }, dot, link, " ", st);
      li._dot = dot;
      li._st = st;
      items.set(name, li);
    }
    return li;
  }

  // updateList brings the side list up to date with the named nodes (all of them: null).
  function updateList(names) {
    const fresh = document.createDocumentFragment();
    for (const name of names || map.nodes.keys()) {
      const n = map.nodes.get(name);
      if (!n) {
        const li = items.get(name);
        if (li) { li.remove(); items.delete(name); }
        continue;
      }
      const known = items.has(name);
      const li = item(name);
      if (!known) fresh.appendChild(li);
      li.dataset.status = n.status;
      li._dot.style.background = nodeColor(n);
      li._st.textContent = n.status + (typeof n.score === "number" ? ` · score ${n.score.toFixed(2)}` : "");
      li.hidden = filter.value !== "" && !name.includes(filter.value);
    }
    list.appendChild(fresh);
    const by = { online: 0, stale: 0, silent: 0, revoked: 0 };
    for (const n of map.nodes.values()) by[n.status] = (by[n.status] || 0) + 1;
    counts.textContent = `${map.nodes.size} nodes (${by.online} online, ${by.stale} stale, ${by.silent} silent, ${by.revoked} revoked), ${map.graph.size} links`;
    container.dataset.nodes = String(map.graph.order);
    container.dataset.links = String(map.graph.size);
  }

  function fillList() {
    for (const name of [...items.keys()]) if (!map.nodes.has(name)) updateList([name]);
    updateList(null);
  }

  let painted = false;
  handle = (kind, data) => {
    const doc = JSON.parse(data);
    if (kind === "snapshot") {
      if (!painted) {
        performance.mark("x6-topology-fetched");
        map.sigma.once("beforeRender", () => performance.mark("x6-graph-built"));
        map.sigma.once("afterRender", () => {
          performance.mark("x6-map-rendered");
          // The next frame starts once the drawn one is on screen.
          requestAnimationFrame(() => {
            performance.mark("x6-map-painted");
            container.dataset.painted = "true";
            setTimeout(fillList, 0);
          });
        });
      }
      map.load(doc);
      // Drawn even when nothing changed the graph (an empty mesh).
      map.sigma.scheduleRender();
      // The list comes after the map's first picture (it is not needed for it); after a
      // reconnection's snapshot, it is filled again at once.
      if (painted) setTimeout(fillList, 0);
      painted = true;
    } else {
      map.applyDiff(doc);
      updateList([...(doc.nodes || []).map((n) => n[0]), ...(doc.gone || [])]);
    }
    live.textContent = `live · ${fmtTime(doc.at)}`;
  };
  for (const [kind, data] of pending.splice(0)) handle(kind, data);

  filter.addEventListener("input", () => {
    for (const [name, li] of items) li.hidden = filter.value !== "" && !name.includes(filter.value);
  });

  ctx.onLeave(() => { clearTimeout(retry); if (es) es.close(); map.kill(); });
}

export const mapScreen = { id: "map", title: "Map", role: "viewer", nav: true, render };
