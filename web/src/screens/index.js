// The console's screens, in navigation order. A screen is {id, title, role, nav, render(main, ctx)}:
// role is the least role that sees it (viewer < operator < admin), and the server enforces the
// same role on every call the screen makes. New features add a module here and one line below
// (governance proposals and votes, billing invoices and subscriptions are expected to).
import { mapScreen } from "./map.js";
import { nodeScreen } from "./node.js";
import { tokensScreen, usersScreen, keysScreen, auditScreen } from "./admin.js";

const rank = { viewer: 1, operator: 2, admin: 3 };

export function roleAtLeast(have, need) {
  return (rank[have] || 0) >= (rank[need] || 99);
}

export const screens = [
  mapScreen,
  nodeScreen,
  keysScreen,
  tokensScreen,
  usersScreen,
  auditScreen,
];
