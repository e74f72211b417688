// The x0tta6bl4 web console: a hash-routed single page over the control plane's API. Screens are
// listed in screens/index.js with the least role that may see them; the server checks every call
// again, so hiding a screen is convenience, never the protection.
import { el, clear } from "./dom.js";
import { get, post, setCSRF, APIError } from "./api.js";
import { screens, roleAtLeast } from "./screens/index.js";

// Marks for the first-paint measurement (the browser test reads them; docs/console.md).
performance.mark("x6-app-start");
const state = { session: null, current: null };
const main = document.getElementById("main");

function navigate(hash) {
  if (location.hash !== hash) location.hash = hash;
  else route();
}

async function loadSession() {
  try {
    state.session = await get("/api/v1/console/session");
    setCSRF(state.session.csrf_token);
  } catch (e) {
    if (!(e instanceof APIError) || e.status !== 401) throw e;
    state.session = null;
  }
}

function renderHeader() {
  const nav = clear(document.getElementById("nav"));
  const who = clear(document.getElementById("who"));
  const logout = document.getElementById("logout");
  if (!state.session) {
    logout.hidden = true;
    return;
  }
  const role = state.session.role;
  for (const s of screens) {
    if (!s.nav || !roleAtLeast(role, s.role)) continue;
    nav.appendChild(el("a", { href: `#/${s.id}`, id: `nav-${s.id}`, class: state.current === s.id ? "active" : "" }, s.title));
  }
  who.appendChild(document.createTextNode(`${state.session.user.username} (${role})`));
  logout.hidden = false;
}

function renderLogin(message) {
  clear(main);
  const user = el("input", { name: "username", id: "login-username", autocomplete: "username", required: true });
  const pass = el("input", { name: "password", id: "login-password", type: "password", autocomplete: "current-password", required: true });
  const err = el("p", { class: "error", id: "login-error" }, message || "");
  const form = el("form", { class: "login", id: "login-form" },
    el("h1", {}, "Sign in"), el("label", {}, "Username", user), el("label", {}, "Password", pass),
    el("button", { type: "submit", id: "login-submit" }, "Sign in"), err);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const s = await post("/api/v1/console/login", { username: user.value, password: pass.value });
      state.session = s;
      setCSRF(s.csrf_token);
      navigate("#/map");
    } catch (e) {
      err.textContent = e.status === 429 ? "Too many attempts; wait and try again." : e.message;
    }
  });
  main.appendChild(form);
}

let cleanup = null;

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  if (!state.session) {
    state.current = "login";
    renderHeader();
    renderLogin();
    return;
  }
  const [id, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const screen = screens.find((s) => s.id === (id || "map"));
  state.current = screen ? screen.id : null;
  renderHeader();
  clear(main);
  if (!screen) {
    main.appendChild(el("p", { class: "error" }, "No such screen."));
    return;
  }
  if (!roleAtLeast(state.session.role, screen.role)) {
    main.appendChild(el("p", { class: "error", id: "forbidden" }, `This screen needs the ${screen.role} role; you have ${state.session.role}.`));
    return;
  }
  const ctx = {
    session: state.session,
    navigate,
    args: rest.map(decodeURIComponent),
    onLeave(f) { cleanup = f; },
    expired() { state.session = null; route(); },
  };
  try {
    await screen.render(main, ctx);
  } catch (e) {
    if (e instanceof APIError && e.status === 401) { ctx.expired(); return; }
    main.appendChild(el("p", { class: "error" }, `Error: ${e.message}`));
  }
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await post("/api/v1/users/logout"); } catch { /* the session may be gone already */ }
  state.session = null;
  setCSRF("");
  navigate("#/login");
});
window.addEventListener("hashchange", route);

loadSession().then(() => { performance.mark("x6-session"); return route(); }, (e) => renderLogin(`Cannot reach the control plane: ${e.message}`));
