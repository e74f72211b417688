// The node page: status, peers with link metrics, routes, the self-healing journal, the detector's judgement with the
// neighbours that weighed most, the certificate, and (admins) revocation.
import { el, table, fmtTime, fmtNum } from "../dom.js";
import { get, post, APIError } from "../api.js";
import { roleAtLeast } from "./index.js";

async function optional(p) {
  try { return await get(p); } catch (e) {
    if (e instanceof APIError && (e.status === 503 || e.status === 404)) return { unavailable: e.message };
    throw e;
  }
}

async function render(main, ctx) {
  const name = ctx.args[0] || "";
  const q = encodeURIComponent(name);
  const [node, keys, status, peers, routes, pred, healing] = await Promise.all([
    get(`/api/v1/nodes/${q}`), optional(`/api/v1/nodes/${q}/keys`), get("/api/v1/mesh/status"),
    get("/api/v1/mesh/peers"), get("/api/v1/mesh/routes"), optional(`/api/v1/ai/predict/${q}`),
    get(`/api/v1/nodes/${q}/healing`),
  ]);
  const ms = status.nodes.find((n) => n.name === name) || {};
  main.appendChild(el("h1", {}, "Node ", el("span", { id: "node-name" }, name)));
  main.appendChild(table(["state", "last report", "version", "uptime", "overlay", "groups"], [[
    el("span", { id: "node-status" }, ms.status || node.status), fmtTime(ms.last_report), ms.version || "—",
    ms.uptime_seconds !== undefined ? `${ms.uptime_seconds} s` : "—", node.overlay, (node.groups || []).join(", ") || "—",
  ]]));

  if (node.status !== "revoked" && roleAtLeast(ctx.session.role, "admin")) {
    const out = el("span", { id: "revoke-result" });
    const confirm = el("button", { type: "button", class: "danger", id: "revoke-confirm", hidden: true }, `Confirm: revoke ${name}`);
    const start = el("button", { type: "button", id: "revoke" }, "Revoke…");
    start.addEventListener("click", () => { confirm.hidden = false; start.hidden = true; });
    confirm.addEventListener("click", async () => {
      confirm.disabled = true;
      try {
        const r = await post(`/api/v1/nodes/${q}/revoke`);
        out.textContent = `revoked: revocation list ${r.crl_number}`;
        confirm.hidden = true;
        document.getElementById("node-status").textContent = "revoked";
      } catch (e) { out.textContent = `refused: ${e.message}`; confirm.disabled = false; }
    });
    main.appendChild(el("p", {}, start, " ", confirm, " ", out));
  }

  main.appendChild(el("h2", {}, "Peers"));
  const mine = peers.links.filter((l) => l.from === name);
  main.appendChild(mine.length === 0 ? el("p", { class: "note" }, "No peers reported.") :
    table(["peer", "state", "RTT ms", "loss", "endpoint", "tx / rx bytes", "confirmed", "last handshake"],
      mine.map((l) => [el("a", { href: `#/node/${encodeURIComponent(l.to)}` }, l.to), l.state + (l.stale ? " (stale)" : ""),
        fmtNum(l.rtt_ms), `${fmtNum(l.loss_ratio * 100, 1)} %`, l.endpoint || "—", `${l.tx_bytes} / ${l.rx_bytes}`,
        l.confirmed ? "yes" : "no", fmtTime(l.last_handshake)])));

  main.appendChild(el("h2", {}, "Routes"));
  const rs = routes.routes.filter((r) => r.node === name);
  main.appendChild(rs.length === 0 ? el("p", { class: "note" }, "No routes reported.") :
    table(["destination", "next hop", "cost", "hops", "first hop RTT ms", "first hop loss"],
      rs.map((r) => [r.destination, r.next_hop, fmtNum(r.cost), r.hops, fmtNum(r.next_hop_link && r.next_hop_link.rtt_ms),
        r.next_hop_link ? `${fmtNum(r.next_hop_link.loss_ratio * 100, 1)} %` : "—"])));

  main.appendChild(el("h2", {}, "Anomaly detector"));
  if (pred.unavailable) main.appendChild(el("p", { class: "note" }, pred.unavailable));
  else {
    main.appendChild(table(["score", "threshold", "judgement", "class", "telemetry"], [[fmtNum(pred.score, 3), fmtNum(pred.threshold, 3),
      el("strong", {}, pred.anomalous ? "anomalous" : "normal"), pred.class, pred.telemetry_missing ? "missing (node silent)" : fmtTime(pred.reported_at)]]));
    main.appendChild(el("p", { class: "note" }, "Neighbours ranked by occlusion: how much the node's score falls when that neighbour is cut out."));
    main.appendChild(table(["neighbour", "contribution", "its own score"],
      (pred.top_neighbours || []).map((c) => [c.name, fmtNum(c.contribution, 3), fmtNum(c.score, 3)])));
  }

  main.appendChild(el("h2", {}, "Self-healing journal"));
  if (healing.entries.length === 0) {
    main.appendChild(el("p", { class: "note", id: "healing-none" }, "No healing decision reported: the node has not routed around a neighbour since it started (or reports no journal)."));
  } else {
    main.appendChild(el("p", { class: "note" }, `The node's latest decisions, newest first, as reported ${fmtTime(healing.reported_at)}.`));
    main.appendChild(el("div", { id: "healing" }, table(["time", "neighbour", "action", "class", "confidence", "rule", "evidence"],
      healing.entries.slice().reverse().map((e) => [fmtTime(e.time), el("a", { href: `#/node/${encodeURIComponent(e.peer)}` }, e.peer),
        el("strong", {}, e.action), e.class, fmtNum(e.confidence, 3), e.rule,
        Object.entries(e.evidence || {}).map(([k, v]) => `${k} ${fmtNum(v, 4)}`).join(", ")]))));
  }

  main.appendChild(el("h2", {}, "Certificate"));
  const k = keys.unavailable ? {} : keys;
  main.appendChild(table(["field", "value"], [
    ["SPIFFE ID", el("span", { class: "mono" }, node.spiffe_id)], ["serial", el("span", { class: "mono" }, node.serial)],
    ["fingerprint", el("span", { class: "mono" }, k.fingerprint || "—")], ["valid", `${fmtTime(node.not_before)} → ${fmtTime(node.not_after)}`],
    ["verification now", k.verification || keys.unavailable || "—"], ["key ID", el("span", { class: "mono" }, node.key_id)],
    ["algorithms", k.algorithms ? `${k.algorithms.kem}; ${k.algorithms.signature}; ${k.algorithms.tls}` : "—"],
    ["enrolled", fmtTime(node.enrolled_at)], ["renewed", fmtTime(node.renewed_at)], ["revoked", fmtTime(node.revoked_at)],
  ]));
}

export const nodeScreen = { id: "node", title: "Node", role: "viewer", nav: false, render };
