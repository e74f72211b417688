// The console's screens, in navigation order. A screen is {id, title, role, nav, render(main, ctx)}:
// role is the least role that sees it (viewer < operator < admin), and the server enforces the
// same role on every call the screen makes; a screen's actions check the role they need again
// (governance and billing: reading is viewer, acting is operator). New features add a module here
// and one line below.
import { mapScreen } from "./map.js";
import { nodeScreen } from "./node.js";
import { tokensScreen, usersScreen, keysScreen, auditScreen } from "./admin.js";
import { governanceScreen } from "./governance.js";
import { billingScreen } from "./billing.js";

const rank = { viewer: 1, operator: 2, admin: 3 };

export function roleAtLeast(have, need) {
  return (rank[have] || 0) >= (rank[need] || 99);
}

export const screens = [
  mapScreen,
  nodeScreen,
  governanceScreen,
  billingScreen,
  keysScreen,
  tokensScreen,
  usersScreen,
  auditScreen,
];
