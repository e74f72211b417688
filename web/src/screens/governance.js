// Governance: the members' proposals with their state, tally and ballots counted (viewer), and, for
// operators, putting a revocation to the members. Ballots are signed by each member's own ML-DSA-65
// key with `ctl dao vote`: that key never reaches a browser, so there is no vote button here. Other
// actions (policy, admit, retire, heal, model, prices) carry documents the CLI builds:
// `ctl dao propose`.
import { el, table, fmtTime } from "../dom.js";
import { get, post } from "../api.js";
import { roleAtLeast } from "./index.js";

function field(label, input) { return el("label", {}, label, input); }

const pct = (bps) => `${(bps / 100).toFixed(2).replace(/\.?0+$/, "")} %`;

function proposalForm(out, reload) {
  const title = el("input", { id: "gov-title", required: true, maxlength: 200 });
  const node = el("input", { id: "gov-node", required: true, placeholder: "node name" });
  const voting = el("input", { id: "gov-voting", type: "number", min: 1, max: 43200, value: 1440 });
  const timelock = el("input", { id: "gov-timelock", type: "number", min: 0, max: 43200, value: 60 });
  const quorum = el("input", { id: "gov-quorum", type: "number", min: 0.01, max: 100, step: 0.01, value: 50 });
  const threshold = el("input", { id: "gov-threshold", type: "number", min: 50.01, max: 100, step: 0.01, value: 66.67 });
  const form = el("form", { class: "inline", id: "gov-form" },
    field("title", title), field("revoke node", node), field("voting (minutes)", voting), field("timelock (minutes)", timelock),
    field("quorum %", quorum), field("threshold %", threshold), el("button", { type: "submit", id: "gov-propose" }, "Propose"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const p = await post("/api/v1/dao/proposals", {
        title: title.value, voting_seconds: Math.round(Number(voting.value) * 60), timelock_seconds: Math.round(Number(timelock.value) * 60),
        quorum_bps: Math.round(Number(quorum.value) * 100), threshold_bps: Math.round(Number(threshold.value) * 100),
        action: { type: "revoke", node: node.value },
      });
      out.replaceChildren(el("p", {}, "Proposed ", el("span", { class: "mono" }, p.id), ": members vote with ", el("code", {}, `ctl dao vote ${p.id}`), "."));
      reload();
    } catch (e) { out.replaceChildren(el("p", { class: "error" }, e.message)); }
  });
  return form;
}

async function render(main, ctx) {
  main.appendChild(el("h1", {}, "Governance"));
  main.appendChild(el("p", { class: "note" }, "Members vote with ballots signed by their own keys (",
    el("code", {}, "ctl dao vote <id> yes|no|abstain"), "); the control plane counts them and logs each in the hash-chained governance log (",
    el("code", {}, "ctl dao verify"), ")."));
  const out = el("div", { id: "gov-result" });
  const holder = el("div", { id: "proposals" });
  async function list() {
    const r = await get("/api/v1/dao/proposals");
    const proposals = r.proposals || [];
    holder.replaceChildren(proposals.length === 0 ? el("p", { class: "note" }, "No proposals.") :
      table(["title", "action", "state", "voting", "executable", "yes / no / abstain of total", "ballots", "quorum, threshold", "by", "id"],
        proposals.map((p) => [
          el("span", { class: "proposal-title" }, p.title), p.action, el("strong", { class: `state-${p.state}` }, p.state),
          `${fmtTime(p.start)} → ${fmtTime(p.end)}`, fmtTime(p.executable_at),
          `${p.tally.yes} / ${p.tally.no} / ${p.tally.abstain} of ${p.tally.total}${p.quadratic ? " (quadratic)" : ""}`,
          String(p.ballots), `${pct(p.quorum_bps)}, ${pct(p.threshold_bps)}`, p.created_by,
          el("span", { class: "mono", title: p.id }, p.id.slice(0, 12) + "…"),
        ])));
  }
  if (roleAtLeast(ctx.session.role, "operator")) {
    main.appendChild(el("h2", {}, "Propose a revocation"));
    main.appendChild(proposalForm(out, list));
  }
  main.append(out, el("h2", {}, "Proposals"), holder);
  await list();
}

export const governanceScreen = { id: "governance", title: "Governance", role: "viewer", nav: true, render };
