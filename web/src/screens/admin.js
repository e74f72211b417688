// Operator tasks: join tokens, users and the audit log (admin), and one's own API keys (viewer).
// Secrets the server shows once (tokens, keys) are shown once here too and never stored.
import { el, table, fmtTime } from "../dom.js";
import { get, post, call } from "../api.js";

function field(label, input) { return el("label", {}, label, input); }

function once(secret) {
  return el("p", { class: "note" }, "Shown once; copy it now: ", el("span", { class: "mono secret" }, secret));
}

async function tokens(main) {
  main.appendChild(el("h1", {}, "Join tokens"));
  const name = el("input", { id: "token-node", placeholder: "any" });
  const groups = el("input", { id: "token-groups", placeholder: "web, ops" });
  const desc = el("input", { id: "token-desc" });
  const out = el("div", { id: "token-result" });
  const form = el("form", { class: "inline" }, field("node name", name), field("groups", groups), field("description", desc),
    el("button", { type: "submit", id: "token-create" }, "Create token"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const body = { description: desc.value };
      if (name.value) body.node_name = name.value;
      const gs = groups.value.split(",").map((s) => s.trim()).filter(Boolean);
      if (gs.length) body.groups = gs;
      const r = await post("/api/v1/enroll/tokens", body);
      out.replaceChildren(once(r.token));
      list();
    } catch (e) { out.replaceChildren(el("p", { class: "error" }, e.message)); }
  });
  const holder = el("div");
  main.append(form, out, holder);
  async function list() {
    const r = await get("/api/v1/enroll/tokens");
    holder.replaceChildren(table(["prefix", "node", "groups", "description", "created by", "expires", "used"],
      r.tokens.map((t) => [el("span", { class: "mono" }, t.prefix), t.node_name || "any", (t.groups || []).join(", "), t.description,
        t.created_by, fmtTime(t.expires_at), fmtTime(t.used_at)])));
  }
  await list();
}

async function users(main, ctx) {
  main.appendChild(el("h1", {}, "Users"));
  const uname = el("input", { id: "user-name", required: true });
  const pass = el("input", { id: "user-password", type: "password", autocomplete: "new-password" });
  const role = el("select", { id: "user-role" }, ["viewer", "operator", "admin"].map((r) => el("option", { value: r }, r)));
  const out = el("div", { id: "user-result" });
  const form = el("form", { class: "inline" }, field("username", uname), field("password (empty: API keys only)", pass), field("role", role),
    el("button", { type: "submit", id: "user-create" }, "Create user"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const body = { username: uname.value, role: role.value };
      if (pass.value) body.password = pass.value;
      await post("/api/v1/users/register", body);
      out.replaceChildren(el("p", {}, "Created ", uname.value, "."));
      list();
    } catch (e) { out.replaceChildren(el("p", { class: "error" }, e.message)); }
  });
  const holder = el("div", { id: "users" });
  main.append(form, out, holder);
  async function list() {
    const r = await get("/api/v1/users");
    holder.replaceChildren(table(["id", "username", "role", "state", "created", ""],
      r.users.map((u) => {
        let action = "";
        if (u.id !== ctx.session.user.id) {
          action = el("button", { type: "button" }, u.disabled ? "Enable" : "Disable");
          action.addEventListener("click", async () => {
            try { await call("PATCH", `/api/v1/users/${u.id}`, { disabled: !u.disabled }); list(); } catch (e) { out.replaceChildren(el("p", { class: "error" }, e.message)); }
          });
        }
        return [u.id, el("span", { class: "username" }, u.username), u.role, u.disabled ? "disabled" : "active", fmtTime(u.created_at), action];
      })));
  }
  await list();
}

async function keys(main, ctx) {
  const all = ctx.session.role === "admin";
  main.appendChild(el("h1", {}, all ? "API keys (everyone's)" : "Your API keys"));
  const name = el("input", { id: "key-name", required: true });
  const out = el("div", { id: "key-result" });
  const form = el("form", { class: "inline" }, field("name", name), el("button", { type: "submit", id: "key-create" }, "Create key"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await post("/api/v1/keys", { name: name.value });
      out.replaceChildren(once(r.key));
      list();
    } catch (e) { out.replaceChildren(el("p", { class: "error" }, e.message)); }
  });
  const holder = el("div");
  main.append(form, out, holder);
  async function list() {
    const r = await get(all ? "/api/v1/keys?all=true" : "/api/v1/keys");
    holder.replaceChildren(table(["prefix", "name", "role", "owner", "created", "expires", ""],
      r.keys.filter((k) => !k.revoked_at).map((k) => {
        const b = el("button", { type: "button" }, "Revoke");
        b.addEventListener("click", async () => {
          try { await call("DELETE", `/api/v1/keys/${k.id}`); list(); } catch (e) { out.replaceChildren(el("p", { class: "error" }, e.message)); }
        });
        return [el("span", { class: "mono" }, k.prefix), k.name, k.role, k.owner, fmtTime(k.created_at), fmtTime(k.expires_at), b];
      })));
  }
  await list();
}

async function audit(main) {
  main.appendChild(el("h1", {}, "Audit log"));
  const r = await get("/api/v1/audit");
  main.appendChild(table(["time", "actor", "action", "target", "detail", "from"],
    r.entries.map((e) => [fmtTime(e.at), e.actor, e.action, e.target, e.detail, e.remote])));
}

export const tokensScreen = { id: "tokens", title: "Join tokens", role: "admin", nav: true, render: tokens };
export const usersScreen = { id: "users", title: "Users", role: "admin", nav: true, render: users };
export const keysScreen = { id: "keys", title: "API keys", role: "viewer", nav: true, render: keys };
export const auditScreen = { id: "audit", title: "Audit log", role: "admin", nav: true, render: audit };
