// Billing: plans, invoices (with the transfers recorded against one) and subscriptions (viewer);
// for operators, asking an account to pay (a new invoice) and checking a transaction by hand.
// Plans are created and priced by admins with `ctl billing`; governance may change prices.
import { el, table, fmtTime } from "../dom.js";
import { get, post } from "../api.js";
import { roleAtLeast } from "./index.js";

function field(label, input) { return el("label", {}, label, input); }

const networks = ["tron-usdt", "ton-usdt", "ton"];

function invoiceDetail(inv) {
  return el("div", { class: "invoice", id: `invoice-${inv.id}` },
    el("h3", {}, `Invoice ${inv.id}`),
    table(["field", "value"], [
      ["account", inv.account], ["plan", String(inv.plan_id)], ["network", inv.network], ["amount", inv.amount_text],
      ["pay to", el("span", { class: "mono" }, inv.receiver)], ["reference", el("span", { class: "mono" }, inv.reference || "—")],
      ["status", el("strong", {}, inv.status)], ["expires", fmtTime(inv.expires_at)], ["paid", fmtTime(inv.paid_at)],
      ["instructions", inv.instructions],
    ]),
    (inv.payments || []).length === 0 ? el("p", { class: "note" }, "No transfer recorded against it.") :
      table(["transaction", "outcome", "reason", "sender", "amount", "block time"],
        (inv.payments || []).map((p) => [el("span", { class: "mono" }, p.tx_id), p.outcome, p.reason || "—", el("span", { class: "mono" }, p.sender), p.amount, fmtTime(p.block_time)])));
}

async function render(main, ctx) {
  main.appendChild(el("h1", {}, "Billing"));
  const operator = roleAtLeast(ctx.session.role, "operator");
  const out = el("div", { id: "billing-result" });
  const plansHolder = el("div", { id: "plans" });
  const invoicesHolder = el("div", { id: "invoices" });
  const subsHolder = el("div", { id: "subscriptions" });
  const detail = el("div", { id: "invoice-detail" });

  async function showInvoice(id) {
    try { detail.replaceChildren(invoiceDetail(await get(`/api/v1/billing/invoices/${encodeURIComponent(id)}`))); } catch (e) { detail.replaceChildren(el("p", { class: "error" }, e.message)); }
  }

  async function reload() {
    const [pl, inv, sub] = await Promise.all([get("/api/v1/billing/plans"), get("/api/v1/billing/invoices"), get("/api/v1/billing/subscriptions")]);
    const plans = pl.plans || [], invoices = inv.invoices || [], subs = sub.subscriptions || [];
    plansHolder.replaceChildren(plans.length === 0 ? el("p", { class: "note" }, "No plans (admins create them with ctl billing plan create).") :
      table(["id", "name", "USDT (micro)", "TON (nano)", "node quota", "days"],
        plans.map((p) => [String(p.id), p.name, p.price_usdt, p.price_ton, String(p.node_quota), String(Math.round(p.duration_seconds / 86400))])));
    invoicesHolder.replaceChildren(invoices.length === 0 ? el("p", { class: "note" }, "No invoices.") :
      table(["id", "account", "plan", "network", "amount", "status", "created", "expires", "paid", ""],
        invoices.map((i) => {
          const b = el("button", { type: "button" }, "Details");
          b.addEventListener("click", () => showInvoice(i.id));
          return [String(i.id), el("span", { class: "account" }, i.account), String(i.plan_id), i.network, i.amount_text, el("strong", {}, i.status),
            fmtTime(i.created_at), fmtTime(i.expires_at), fmtTime(i.paid_at), b];
        })));
    subsHolder.replaceChildren(subs.length === 0 ? el("p", { class: "note" }, "No subscriptions.") :
      table(["account", "plan", "nodes used / quota", "expires", "grace ends", "status"],
        subs.map((s) => [el("span", { class: "account" }, s.account), String(s.plan_id), `${s.nodes_used} / ${s.node_quota}`,
          fmtTime(s.expires_at), fmtTime(s.grace_ends_at), el("strong", {}, s.status)])));
  }

  if (operator) {
    const account = el("input", { id: "invoice-account", required: true });
    const plan = el("input", { id: "invoice-plan", type: "number", min: 1, required: true });
    const network = el("select", { id: "invoice-network" }, networks.map((n) => el("option", { value: n }, n)));
    const invForm = el("form", { class: "inline", id: "invoice-form" }, field("account", account), field("plan id", plan), field("network", network),
      el("button", { type: "submit", id: "invoice-create" }, "Create invoice"));
    invForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const inv = await post("/api/v1/billing/invoices", { account: account.value, plan_id: Number(plan.value), network: network.value });
        out.replaceChildren(el("p", {}, `Invoice ${inv.id} created.`));
        detail.replaceChildren(invoiceDetail(inv));
        await reload();
      } catch (e) { out.replaceChildren(el("p", { class: "error" }, e.message)); }
    });
    const txNet = el("select", { id: "verify-network" }, networks.map((n) => el("option", { value: n }, n)));
    const tx = el("input", { id: "verify-tx", required: true, placeholder: "transaction id" });
    const forInvoice = el("input", { id: "verify-invoice", type: "number", min: 1, placeholder: "optional" });
    const verForm = el("form", { class: "inline", id: "verify-form" }, field("network", txNet), field("transaction", tx), field("for invoice", forInvoice),
      el("button", { type: "submit", id: "verify-submit" }, "Check transaction"));
    verForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const body = { network: txNet.value, tx_id: tx.value };
        if (forInvoice.value) body.invoice_id = Number(forInvoice.value);
        const r = await post("/api/v1/billing/verify", body);
        out.replaceChildren(el("p", {}, `${r.status}${r.reason ? ": " + r.reason : ""}`));
        await reload();
      } catch (e) { out.replaceChildren(el("p", { class: "error" }, e.message)); }
    });
    main.append(el("h2", {}, "Ask for payment"), invForm, el("h2", {}, "Check a transaction now"), verForm);
  }
  main.append(out, detail, el("h2", {}, "Invoices (newest first)"), invoicesHolder, el("h2", {}, "Subscriptions"), subsHolder,
    el("h2", {}, "Plans"), plansHolder);
  await reload();
}

export const billingScreen = { id: "billing", title: "Billing", role: "viewer", nav: true, render };
