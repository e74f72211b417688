package control

import (
	"net/http"
	"strconv"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/policy"
)

// opDoc documents an operation for OpenAPI and /docs.
type opDoc struct {
	id, summary, desc string
	tag               string
	req               any // request body type (a zero value), nil for none
	resp              any // success body type (a zero value), nil for none
	status            int // success status
	contentType       string
	params            []param // path parameters
	query             []param
	extra             map[int]string // further responses worth documenting
	deprecated        string         // what replaces a deprecated operation; "" when current
}

type param struct{ name, typ, desc string }

// buildRoutes is the API. Seed paths (/health, /mesh/*, /metrics, /ai/predict, /dao/vote,
// /security/handshake) are kept as aliases of their /api/v1 paths; routes with a deprecated doc
// are kept only for existing clients.
func (s *Server) buildRoutes() []*route {
	metricsAccess := accessUser
	if s.cfg.Metrics.Public {
		metricsAccess = accessPublic
	}
	reportLimit := s.cfg.Limits.MaxReportBytes
	return []*route{
		{method: "GET", path: "/api/v1/health", aliases: []string{"/health"}, access: accessPublic, h: s.handleHealth, doc: opDoc{
			id: "health", tag: "service", summary: "Liveness and database health",
			desc: "200 while the instance can serve; 503 (with Retry-After, `status` `degraded`) when the last database check (every 5 s, 5 s timeout) failed, so a load balancer takes the instance out of rotation.",
			resp: api.Health{}, status: 200, extra: map[int]string{503: "the database is unavailable"}}},
		{method: "GET", path: "/openapi.json", access: accessPublic, h: s.handleOpenAPI, doc: opDoc{
			id: "openapi", tag: "service", summary: "This API as an OpenAPI 3.1 document", status: 200, contentType: "application/json"}},
		{method: "GET", path: "/docs", access: accessPublic, h: s.handleDocs, doc: opDoc{
			id: "docs", tag: "service", summary: "Human-readable API documentation (HTML)", status: 200, contentType: "text/html"}},
		{method: "GET", path: "/api/v1/metrics", aliases: []string{"/metrics"}, access: metricsAccess, role: auth.Viewer, h: s.handleMetrics, doc: opDoc{
			id: "metrics", tag: "service", summary: "Prometheus metrics (API and mesh)",
			desc:   "Prometheus text exposition. Needs a viewer credential unless `metrics.public` is set.",
			status: 200, contentType: "text/plain; version=0.0.4"}},

		{method: "POST", path: "/api/v1/users/register", access: accessOptional, authLimited: true, h: s.handleRegister, doc: opDoc{
			id: "registerUser", tag: "users", summary: "Create an account",
			desc: "An admin may create accounts of any role (and without a password: API keys only). With `auth.registration: open`, anyone may register a viewer account without credentials.",
			req:  api.RegisterRequest{}, resp: api.User{}, status: 201, extra: map[int]string{409: "username taken or account limit reached", 503: "password hashing busy"}}},
		{method: "POST", path: "/api/v1/users/login", access: accessPublic, authLimited: true, h: s.handleLogin, doc: opDoc{
			id: "login", tag: "users", summary: "Log in: exchange username and password for a session token",
			desc: "The token is shown once and expires after `auth.session_ttl`. Passwords are checked with argon2id; unknown users cost the same time.",
			req:  api.LoginRequest{}, resp: api.LoginResponse{}, status: 200, extra: map[int]string{503: "password hashing busy"}}},
		{method: "POST", path: "/api/v1/users/logout", access: accessUser, role: auth.Viewer, h: s.handleLogout, doc: opDoc{
			id: "logout", tag: "users", summary: "End the session this request authenticated with", status: 204}},
		{method: "GET", path: "/api/v1/users/me", access: accessUser, role: auth.Viewer, h: s.handleMe, doc: opDoc{
			id: "me", tag: "users", summary: "The authenticated account", resp: api.Me{}, status: 200}},
		{method: "GET", path: "/api/v1/users", access: accessUser, role: auth.Admin, h: s.handleListUsers, doc: opDoc{
			id: "listUsers", tag: "users", summary: "List accounts", resp: api.UserList{}, status: 200,
			query: []param{{"after_id", "integer", "return accounts with larger IDs (paging)"}, {"limit", "integer", "at most this many (default and maximum 1000)"}}}},
		{method: "PATCH", path: "/api/v1/users/{id}", access: accessUser, role: auth.Admin, h: s.handleUpdateUser, doc: opDoc{
			id: "updateUser", tag: "users", summary: "Change an account's role, disabled flag or password",
			desc: "Disabling an account or setting its password ends its sessions. Admins cannot change their own role or disable themselves.",
			req:  api.UpdateUserRequest{}, resp: api.User{}, status: 200, params: []param{{"id", "integer", "account ID"}}, extra: map[int]string{404: "no such account"}}},

		{method: "POST", path: "/api/v1/keys", access: accessUser, role: auth.Viewer, h: s.handleCreateKey, doc: opDoc{
			id: "createAPIKey", tag: "keys", summary: "Create an API key (shown once)",
			desc: "The key's role may not exceed the caller's. Only a SHA-256 of the key's secret is stored; the prefix identifies it.",
			req:  api.CreateAPIKeyRequest{}, resp: api.APIKeyCreated{}, status: 201, extra: map[int]string{409: "key limit reached"}}},
		{method: "GET", path: "/api/v1/keys", access: accessUser, role: auth.Viewer, h: s.handleListKeys, doc: opDoc{
			id: "listAPIKeys", tag: "keys", summary: "List your API keys (admins: ?all=true for everyone's)", resp: api.APIKeyList{}, status: 200,
			query: []param{{"all", "boolean", "admins only: list every account's keys"}}}},
		{method: "DELETE", path: "/api/v1/keys/{id}", access: accessUser, role: auth.Viewer, h: s.handleRevokeKey, doc: opDoc{
			id: "revokeAPIKey", tag: "keys", summary: "Revoke an API key (your own; admins: any)", status: 204,
			params: []param{{"id", "integer", "key ID"}}, extra: map[int]string{404: "no such live key of yours"}}},

		{method: "POST", path: "/api/v1/enroll/tokens", access: accessUser, role: auth.Admin, h: s.handleCreateJoinToken, doc: opDoc{
			id: "createJoinToken", tag: "enrollment", summary: "Create a one-time join token (shown once)",
			desc: "32 random bytes, stored as a SHA-256, usable once before it expires. The returned token carries the CA pin so the node can check the CA it enrolls with.",
			req:  api.CreateJoinTokenRequest{}, resp: api.JoinTokenCreated{}, status: 201, extra: map[int]string{409: "too many pending tokens"}}},
		{method: "GET", path: "/api/v1/enroll/tokens", access: accessUser, role: auth.Admin, h: s.handleListJoinTokens, doc: opDoc{
			id: "listJoinTokens", tag: "enrollment", summary: "List join tokens (without secrets)", resp: api.JoinTokenList{}, status: 200}},
		{method: "POST", path: "/api/v1/enroll", access: accessPublic, authLimited: true, h: s.handleEnroll, doc: opDoc{
			id: "enroll", tag: "enrollment", summary: "Enroll a node with a join token",
			desc: "The node sends the token, its chosen name and its public key file (generated on the node; the private key never leaves it). It receives its mesh certificate, X.509-SVID, the CA certificates, the current revocation list, and the signed records of the nodes it may reach (the first page of GET /api/v1/mesh/records), so that it can dial them at once: those of its routing area if the request names it (`routing_area`, 0 to 4294967295; kept as the node's area until its first signed record names one, which counts), otherwise of every area.",
			req:  api.EnrollRequest{}, resp: api.Enrolment{}, status: 201, extra: map[int]string{409: "name or key already enrolled"}}},
		{method: "POST", path: "/api/v1/renew", access: accessNode, h: s.handleRenew, doc: opDoc{
			id: "renew", tag: "enrollment", summary: "Renew the calling node's certificate (mutual TLS)",
			desc: "Authenticated by the node's current X.509-SVID in the TLS handshake; issues a new certificate for the same keys, name and groups. Empty body.",
			resp: api.Bundle{}, status: 200}},
		{method: "GET", path: "/api/v1/ca", access: accessPublic, h: s.handleCA, doc: opDoc{
			id: "ca", tag: "enrollment", summary: "The CA certificates and pin", resp: api.CABundle{}, status: 200}},
		{method: "GET", path: "/api/v1/crl", access: accessPublic, h: s.handleCRL, doc: opDoc{
			id: "crl", tag: "enrollment", summary: "The current signed revocation list (PEM)",
			desc:   "Signed by the CA, so it is public. With `after=N` the request waits up to `wait` seconds for a list newer than N (long poll). Headers: `X-CRL-Number`, `ETag`.",
			status: 200, contentType: "application/x-pem-file",
			query: []param{{"after", "integer", "wait for a list with a higher number than this"}, {"wait", "integer", "seconds to wait (at most limits.max_crl_wait)"}},
			extra: map[int]string{304: "If-None-Match matched the current list"}}},

		{method: "GET", path: "/api/v1/policy", access: accessNodeOrUser, role: auth.Viewer, h: s.handleGetPolicy, doc: opDoc{
			id: "getPolicy", tag: "policy", summary: "The mesh access policy: signed, and as source",
			desc: "`signed` is the CA-signed policy nodes verify and apply; `source` is what the admin set, tests included. `version` 0 means none has been set. With `after=N` the request waits up to `wait` seconds for a version above N (long poll). Header: `X-Policy-Version`.",
			resp: api.Policy{}, status: 200,
			query: []param{{"after", "integer", "wait for a policy with a higher version than this"}, {"wait", "integer", "seconds to wait (at most limits.max_crl_wait)"}}}},
		{method: "PUT", path: "/api/v1/policy", access: accessUser, role: auth.Admin, maxBody: policy.MaxSourceSize, h: s.handlePutPolicy, doc: opDoc{
			id: "setPolicy", tag: "policy", summary: "Set the mesh access policy",
			desc: "The body is the policy source (grants, and tests that must pass). The control plane checks it, runs the tests, gives it the next version, signs it with the CA key, stores it with an audit entry, and wakes every node long-polling GET /api/v1/policy.",
			req:  policy.Source{}, resp: api.Policy{}, status: 200, extra: map[int]string{409: "another policy was set at the same moment; send it again"}}},

		{method: "GET", path: "/api/v1/nodes", access: accessUser, role: auth.Viewer, h: s.handleListNodes, doc: opDoc{
			id: "listNodes", tag: "nodes", summary: "List enrolled nodes",
			desc: "Every enrolled node, revoked ones included, by name. `routing_area` is the area signed in the node's newest record, else the one its enrolment request named (`routing_area_source` says which: `record` or `enrolment`); absent when there is neither.",
			resp: api.NodeList{}, status: 200}},
		{method: "GET", path: "/api/v1/nodes/{name}", access: accessUser, role: auth.Viewer, h: s.handleGetNode, doc: opDoc{
			id: "getNode", tag: "nodes", summary: "One enrolled node", resp: api.Node{}, status: 200,
			params: []param{{"name", "string", "node name"}}, extra: map[int]string{404: "no such node"}}},
		{method: "GET", path: "/api/v1/nodes/{name}/healing", access: accessUser, role: auth.Viewer, h: s.handleNodeHealing, doc: opDoc{
			id: "getNodeHealing", tag: "nodes", summary: "The latest self-healing journal the node reported",
			desc: "The node's most recent self-healing decisions (at most 32, oldest first: which neighbour it routed around or probed again, the rule, the detector's class, confidence and evidence), as its last report that carried them said. `entries` is empty and `reported_at` absent until the node reports a decision.",
			resp: api.NodeHealing{}, status: 200, params: []param{{"name", "string", "node name"}}, extra: map[int]string{404: "no such node"}}},
		{method: "GET", path: "/api/v1/nodes/{name}/keys", access: accessUser, role: auth.Viewer, h: s.handleNodeKeys, doc: opDoc{
			id: "getNodeKeys", tag: "nodes", summary: "A node's certified post-quantum public keys and algorithms",
			desc: "Reads the node's current certificate, verifies it now (CA signature, validity, revocation) and returns its X-Wing (ML-KEM-768+X25519) and ML-DSA-65 public keys, SPIFFE ID and overlay address, with the algorithms they are used with. It contacts no node.",
			resp: api.NodeKeys{}, status: 200, params: []param{{"name", "string", "node name"}}, extra: map[int]string{404: "no such node"}}},
		{method: "POST", path: "/api/v1/nodes/{name}/revoke", access: accessUser, role: auth.Admin, h: s.handleRevokeNode, doc: opDoc{
			id: "revokeNode", tag: "nodes", summary: "Revoke a node: all its certificates and its key",
			desc: "Signs the next revocation list; nodes long-polling /api/v1/crl get it at once, and the node's own mutual-TLS calls are refused immediately.",
			resp: api.RevokeResponse{}, status: 200, params: []param{{"name", "string", "node name"}},
			extra: map[int]string{404: "no such node", 409: "already revoked"}}},

		{method: "POST", path: "/api/v1/mesh/report", access: accessNode, maxBody: reportLimit, h: s.handleReport, doc: opDoc{
			id: "meshReport", tag: "mesh", summary: "A node reports its status, links and routes, and its signed record (mutual TLS)",
			desc: "The reporting node is the one named by its X.509-SVID. `record` is its latest signed link-state record with its certificate: checked (the node's current, unrevoked certificate; the signature) and kept if its sequence number is higher than the one held; a record that fails a check refuses the report (400). `proof` is, on a node of a routing area, its latest destination proof (its level-2 record naming its area's gateways), checked the same way and kept for GET /api/v1/mesh/proofs. The answer carries the current revocation list number and what became of the record and the proof.",
			req:  api.MeshReport{}, resp: api.ReportAccepted{}, status: 202}},
		{method: "GET", path: "/api/v1/mesh/records", access: accessNode, h: s.handleMeshRecords, doc: opDoc{
			id: "meshRecords", tag: "mesh", summary: "The signed records of the nodes the calling node may reach (mutual TLS)",
			desc: "Each node's latest signed link-state record and certificate, which the node verifies itself as it verifies a flooded record, for the nodes of the caller's routing area (the area signed in the caller's last reported record; before its first, the area it named at enrolment; a caller with neither gets every area's): a node has no use for another area's records. A long poll is woken only by a publication in the caller's area. `generation` numbers the answer: with `after=G` only records published after G are returned, and with `wait=S` the request waits up to S seconds (at most `limits.max_crl_wait`) for one. `more` says a page limit (256 records, 4 MiB) cut the answer: ask again at once with `after=generation`. Until the mesh-wide access policy exists, a node may reach every live node.",
			resp: api.MeshRecords{}, status: 200,
			query: []param{{"after", "integer", "only records published after this generation (long poll with wait)"}, {"wait", "integer", "seconds to wait for a newer generation (at most limits.max_crl_wait)"}}}},
		{method: "GET", path: "/api/v1/mesh/proofs", access: accessNode, h: s.handleMeshProofs, doc: opDoc{
			id: "meshProofs", tag: "mesh", summary: "The destination proofs of the nodes of other areas the calling node may reach (mutual TLS)",
			desc: "Each node's latest destination proof (its own signed level-2 record naming the gateways of its routing area, docs/routing.md \"Level 2\") and certificate, for the nodes whose area is not the caller's; the node verifies each itself and routes to those nodes through its area's gateways. A caller of area 0 gets none. Paging and long polling as GET /api/v1/mesh/records (256 proofs, 4 MiB a page), with generations of their own.",
			resp: api.MeshRecords{}, status: 200,
			query: []param{{"after", "integer", "only proofs published after this generation (long poll with wait)"}, {"wait", "integer", "seconds to wait for a newer generation (at most limits.max_crl_wait)"}}}},
		{method: "GET", path: "/api/v1/mesh/status", aliases: []string{"/mesh/status"}, access: accessUser, role: auth.Viewer, h: s.handleMeshStatus, doc: opDoc{
			id: "meshStatus", tag: "mesh", summary: "Every node with its status from its latest report", resp: api.MeshStatus{}, status: 200}},
		{method: "GET", path: "/api/v1/mesh/peers", aliases: []string{"/mesh/peers"}, access: accessUser, role: auth.Viewer, h: s.handleMeshPeers, doc: opDoc{
			id: "meshPeers", tag: "mesh", summary: "The mesh graph: every reported link with its metrics", resp: api.MeshPeers{}, status: 200}},
		{method: "GET", path: "/api/v1/mesh/routes", aliases: []string{"/mesh/routes"}, access: accessUser, role: auth.Viewer, h: s.handleMeshRoutes, doc: opDoc{
			id: "meshRoutes", tag: "mesh", summary: "Every node's reported routes, with the metrics of the first hop", resp: api.MeshRoutes{}, status: 200}},

		{method: "POST", path: "/api/v1/console/login", access: accessPublic, authLimited: true, h: s.handleConsoleLogin, doc: opDoc{
			id: "consoleLogin", tag: "console", summary: "Log in to the web console: the session goes in a cookie",
			desc: "As POST /api/v1/users/login, but the session token is set as an HttpOnly, Secure, SameSite=Strict cookie and not shown; the answer carries the CSRF token that every state-changing request made with the cookie must send in `X-CSRF-Token`. Rate-limited as logins are.",
			req:  api.LoginRequest{}, resp: api.ConsoleSession{}, status: 200, extra: map[int]string{503: "password hashing busy"}}},
		{method: "GET", path: "/api/v1/console/session", access: accessUser, role: auth.Viewer, h: s.handleConsoleSession, doc: opDoc{
			id: "consoleSession", tag: "console", summary: "The console's session: account, role and CSRF token",
			resp: api.ConsoleSession{}, status: 200}},
		{method: "GET", path: "/api/v1/console/topology", access: accessUser, role: auth.Viewer, h: s.handleConsoleTopology, doc: opDoc{
			id: "consoleTopology", tag: "console", summary: "The mesh map: every node with its state and anomaly score, every link up with its loss and RTT",
			resp: api.Topology{}, status: 200}},
		{method: "GET", path: "/api/v1/console/events", access: accessUser, role: auth.Viewer, h: s.handleConsoleEvents, doc: opDoc{
			id: "consoleEvents", tag: "console", summary: "The mesh map as server-sent events",
			desc:   "`event: snapshot` with the whole map in a compact form at once, then `event: diff` with what changed (a report, an enrolment, a revocation, a node turning stale), at most twice a second, and an empty diff every 15 s. Nodes are `[name, status, score|null, anomalous 0|1]`; a snapshot's links are `[index a, index b, rtt_ms, loss_ratio, confirmed 0|1]`, a diff's `[a, b, rtt_ms, loss_ratio, confirmed]`, with `gone` (names) and `cut` (`[a, b]`) for what went (docs/console.md). At most 256 streams are open at once (503 beyond).",
			status: 200, contentType: "text/event-stream", extra: map[int]string{503: "too many open event streams"}}},

		{method: "POST", path: "/api/v1/security/handshake", aliases: []string{"/security/handshake"}, access: accessUser, role: auth.Viewer, h: s.handleHandshake, doc: opDoc{
			id: "securityHandshake", tag: "security", summary: "A node's certified keys (deprecated: performs no handshake)",
			deprecated: "GET /api/v1/nodes/{name}/keys",
			desc:       "The seed API's name for GET /api/v1/nodes/{name}/keys, kept for its clients: the same answer, with `live_check.performed` always false. The response's `Link` header names the successor.",
			req:        api.HandshakeRequest{}, resp: api.HandshakeResponse{}, status: 200, extra: map[int]string{404: "no such node"}}},
		{method: "GET", path: "/api/v1/ai/predict/{node_id}", aliases: []string{"/ai/predict/{node_id}"}, access: accessUser, role: auth.Viewer,
			h: s.handlePredict, doc: opDoc{
				id: "aiPredict", tag: "ai", summary: "The anomaly detector's judgement of a node, computed now",
				desc: "Runs the configured GraphSAGE detector (`ai.model`) on the mesh as the latest reports describe it: every enrolled node, the links the reports list, each node's and link's detector features (a node without a fresh report counts as missing). Returns the node's score (1 − p(normal)), class probabilities, the features used, the model version and the neighbours whose removal from the graph changes the score most.",
				resp: api.Prediction{}, status: 200, params: []param{{"node_id", "string", "node name"}},
				extra: map[int]string{404: "no such node", 503: "no detector model configured"}}},
		{method: "GET", path: "/api/v1/advisories", access: accessUser, role: auth.Viewer, h: s.handleListAdvisories, doc: opDoc{
			id: "listAdvisories", tag: "ai", summary: "The cost advisories in force: relays the detector or an admin names",
			desc: "The CA-signed list nodes receive with their report answers (`signed`, base64), and its entries readable, each with its source: `detector` (ai.advisories) or `operator`. Sequence 0: none signed yet.",
			resp: api.AdvisoryList{}, status: 200}},
		{method: "PUT", path: "/api/v1/advisories/{node_id}", access: accessUser, role: auth.Admin, h: s.handleSetAdvisory, doc: opDoc{
			id: "setAdvisory", tag: "ai", summary: "Name a relay by hand: its neighbours raise their link costs to it",
			desc: "Adds (or replaces) an operator advisory for the node, in force for `ttl_seconds` (default an hour, at most a day), and signs a new list at once. Nodes weigh it as they weigh the detector's: within the multiplier cap, never removing a link, alongside their own probes. Kept in memory: a restart of the control plane forgets it.",
			req:  api.SetAdvisoryRequest{}, resp: api.AdvisoryList{}, status: 200, params: []param{{"node_id", "string", "node name"}},
			extra: map[int]string{404: "no such node", 409: "the node is revoked, or too many operator advisories"}}},
		{method: "DELETE", path: "/api/v1/advisories/{node_id}", access: accessUser, role: auth.Admin, h: s.handleClearAdvisory, doc: opDoc{
			id: "clearAdvisory", tag: "ai", summary: "Withdraw what names a node: an operator advisory, and the detector's with its hold",
			desc: "Removes the node's operator advisory, withdraws the detector's advisory for it however long its hold still runs and forgets the detector's record of its namings, and signs a new list at once (a newer sequence withdraws it on every node). The detector names it again only after a new run of faulty judgements.",
			resp: api.AdvisoryList{}, status: 200, params: []param{{"node_id", "string", "node name"}}, extra: map[int]string{404: "no advisory names the node"}}},
		{method: "GET", path: "/api/v1/ai/reports", access: accessUser, role: auth.Admin, h: s.handleReportArchive, doc: opDoc{
			id: "aiReports", tag: "ai", summary: "Recorded node reports and labelled incidents, for `ai train --from-records`",
			desc: "The reports recorded with `ai.record.enabled` (the detector's part: features, kernel features, peers with their features), oldest first, received in [from, to], at most `limit` (1000) and 4 MiB of reports per answer; `more` says to ask again with `after_id` = `next_after_id`. The first page (no `after_id`) also carries the incidents that overlap [from, to] (at most 1000).",
			resp: api.ReportArchive{}, status: 200,
			query: []param{{"from", "string", "RFC 3339: only reports received at or after this time"}, {"to", "string", "RFC 3339: only reports received at or before this time"},
				{"after_id", "integer", "only reports with larger IDs (paging)"}, {"limit", "integer", "at most this many (default and maximum 1000)"}}}},
		{method: "POST", path: "/api/v1/ai/incidents", access: accessUser, role: auth.Operator, h: s.handleLabelIncident, doc: opDoc{
			id: "aiLabelIncident", tag: "ai", summary: "Label an incident: a node was faulty in a named way for a time",
			desc: "`kind` is a detector class other than normal (linkdeg, crash, overload, blackhole, greyhole, flapping); `to` after `from`, at most 30 days apart; `note` at most 1 KiB. The node must be enrolled. Stored with an audit entry (`incident.label`); at most 100 000 incidents, pruned with `ai.record.retention` after they end. `ai train --from-records` labels the recorded reports with them.",
			req:  api.Incident{}, resp: api.Incident{}, status: 201, extra: map[int]string{404: "no such node", 409: "incident limit reached"}}},
		{method: "POST", path: "/api/v1/dao/proposals", access: accessUser, role: auth.Operator, maxBody: maxGovBody, h: s.handlePropose, doc: opDoc{
			id: "daoPropose", tag: "governance", summary: "Put an action to the members (docs/governance.md)",
			desc: "Freezes the current roster, opens the voting window now, and logs the proposal. A policy action's source is compiled and signed with the CA key under the next policy version nobody holds or reserved; nodes that govern the policy apply it only with the members' quorum certificate. `encoded` is the canonical proposal whose hash is the id: members' CLIs recompute it before signing a ballot.",
			req:  api.ProposalRequest{}, resp: api.Proposal{}, status: 201, extra: map[int]string{409: "governance is not set up (no genesis roster)"}}},
		{method: "GET", path: "/api/v1/dao/proposals", access: accessUser, role: auth.Viewer, h: s.handleProposals, doc: opDoc{
			id: "daoProposals", tag: "governance", summary: "Proposals, newest first, with state and tally", resp: api.Proposals{}, status: 200}},
		{method: "GET", path: "/api/v1/dao/proposals/{id}", access: accessUser, role: auth.Viewer, h: s.handleProposal, doc: opDoc{
			id: "daoProposal", tag: "governance", summary: "One proposal with state and tally", resp: api.Proposal{}, status: 200,
			params: []param{{"id", "string", "proposal id (64 hex digits)"}}, extra: map[int]string{404: "no such proposal"}}},
		{method: "POST", path: "/api/v1/dao/vote", aliases: []string{"/dao/vote"}, access: accessUser, role: auth.Operator, maxBody: maxGovBody, h: s.handleVote, doc: opDoc{
			id: "daoVote", tag: "governance", summary: "Cast a member's signed ballot; answers with a receipt",
			desc: "The ballot is signed by the member's own ML-DSA-65 key (`ctl dao vote`); the control plane never holds it. Refused (409): a bad signature, a non-member, a ballot for another proposal, outside the window (by the control plane's clock), or a sequence not above the counted one (the same ballot again returns the same receipt). The receipt names the log entry that holds the ballot.",
			req:  api.VoteRequest{}, resp: api.VoteReceipt{}, status: 200, extra: map[int]string{404: "no such proposal", 409: "refused"}}},
		{method: "GET", path: "/api/v1/dao/log", access: accessUser, role: auth.Viewer, h: s.handleGovLog, doc: opDoc{
			id: "daoLog", tag: "governance", summary: "The hash-chained governance log, for ctl dao verify", resp: api.GovernanceLog{}, status: 200,
			query: []param{{"after", "integer", "only entries after this sequence (256 per page)"}}}},
		{method: "GET", path: "/api/v1/dao/decisions", access: accessNodeOrUser, role: auth.Viewer, h: s.handleDecisions, doc: opDoc{
			id: "daoDecisions", tag: "governance", summary: "Quorum certificates of enacted proposals, in order (node: mutual TLS)",
			desc: "A passed proposal is enacted once its timelock ends. Nodes verify each certificate against the roster they follow before they apply it.",
			resp: api.Decisions{}, status: 200, query: []param{{"after", "integer", "only decisions logged after this sequence"}}}},

		{method: "GET", path: "/api/v1/billing/plans", access: accessUser, role: auth.Viewer, h: s.handleListPlans, doc: opDoc{
			id: "listPlans", tag: "billing", summary: "The plans an account can buy", resp: api.BillingPlanList{}, status: 200}},
		{method: "POST", path: "/api/v1/billing/plans", access: accessUser, role: auth.Admin, h: s.handleCreatePlan, doc: opDoc{
			id: "createPlan", tag: "billing", summary: "Create a plan: prices in the smallest unit, node quota, duration",
			desc: "Amounts are strings of decimal digits: `price_usdt` in micro-USDT (6 decimals, for tron-usdt and ton-usdt), `price_ton` in nanotons (9 decimals; empty or 0: not sold for Toncoin).",
			req:  api.CreatePlanRequest{}, resp: api.BillingPlan{}, status: 201, extra: map[int]string{409: "name taken"}}},
		{method: "PATCH", path: "/api/v1/billing/plans/{id}", access: accessUser, role: auth.Admin, h: s.handleSetPlanPrice, doc: opDoc{
			id: "setPlanPrice", tag: "billing", summary: "Change a plan's prices (issued invoices keep theirs)",
			req: api.SetPlanPriceRequest{}, resp: api.BillingPlan{}, status: 200, params: []param{{"id", "integer", "plan ID"}}, extra: map[int]string{404: "no such plan"}}},
		{method: "POST", path: "/api/v1/billing/invoices", access: accessUser, role: auth.Operator, h: s.handleCreateInvoice, doc: opDoc{
			id: "createInvoice", tag: "billing", summary: "Ask an account to pay for a plan on tron-usdt, ton-usdt or ton",
			desc: "On tron-usdt the amount is the plan's price plus 1 to 9999 micro-USDT, unique among open invoices: a TRC-20 transfer has no memo, so the exact amount identifies the invoice. On TON the payment's comment must be the invoice's `reference`. `instructions` says what to send. 404 when billing is disabled.",
			req:  api.CreateInvoiceRequest{}, resp: api.Invoice{}, status: 201, extra: map[int]string{404: "no such plan, or billing disabled", 409: "too many open invoices"}}},
		{method: "GET", path: "/api/v1/billing/invoices", access: accessUser, role: auth.Viewer, h: s.handleListInvoices, doc: opDoc{
			id: "listInvoices", tag: "billing", summary: "The newest invoices first (200), without their payments", resp: api.InvoiceList{}, status: 200}},
		{method: "GET", path: "/api/v1/billing/subscriptions", access: accessUser, role: auth.Viewer, h: s.handleListSubscriptions, doc: opDoc{
			id: "listSubscriptions", tag: "billing", summary: "Subscriptions by account (200): quota, nodes used, expiry and grace", resp: api.SubscriptionList{}, status: 200}},
		{method: "GET", path: "/api/v1/billing/invoices/{id}", access: accessUser, role: auth.Viewer, h: s.handleGetInvoice, doc: opDoc{
			id: "getInvoice", tag: "billing", summary: "An invoice and every transfer recorded against it",
			resp: api.Invoice{}, status: 200, params: []param{{"id", "integer", "invoice ID"}}, extra: map[int]string{404: "no such invoice"}}},
		{method: "POST", path: "/api/v1/billing/verify", access: accessUser, role: auth.Operator, h: s.handleVerify, doc: opDoc{
			id: "verifyPayment", tag: "billing", summary: "Check one transaction against its chain now and record the result",
			desc: "Applies the watcher's rules (official USDT contract or our USDT jetton wallet, our address, success, finality) and records the transfer once, crediting the invoice it identifies. With `invoice_id` the operator attests which invoice a transfer pays (a TON payment whose comment was lost); amount and time are still checked. `pending`: not final yet.",
			req:  api.VerifyRequest{}, resp: api.VerifyResponse{}, status: 200, extra: map[int]string{404: "no such invoice, or billing disabled", 409: "the invoice is not open", 502: "the provider failed; try again"}}},
		{method: "GET", path: "/api/v1/billing/subscriptions/{account}", access: accessUser, role: auth.Viewer, h: s.handleGetSubscription, doc: opDoc{
			id: "getSubscription", tag: "billing", summary: "An account's subscription: quota, nodes used, expiry and grace",
			resp: api.Subscription{}, status: 200, params: []param{{"account", "string", "account name"}}, extra: map[int]string{404: "no subscription"}}},

		{method: "GET", path: "/api/v1/audit", access: accessUser, role: auth.Admin, h: s.handleAudit, doc: opDoc{
			id: "audit", tag: "audit", summary: "The audit log, newest first", resp: api.AuditList{}, status: 200,
			query: []param{{"before_id", "integer", "entries older than this ID (paging)"}, {"limit", "integer", "at most this many (default and maximum 1000)"}}}},
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	h := s.dbHealth.Load()
	status, code := "ok", http.StatusOK
	if !h.ok {
		status, code = "degraded", http.StatusServiceUnavailable
		w.Header().Set("Retry-After", strconv.Itoa(int(unavailableRetryAfter/time.Second)))
	}
	writeJSON(w, code, api.Health{Status: status, Version: s.version, Database: s.st.Driver(), DatabaseOK: h.ok,
		DatabaseCheckedAt: h.at.UTC(), UptimeSeconds: int64(s.now().Sub(s.started) / time.Second), TrustDomain: s.td,
		CRLNumber: s.crl.get().list.Number})
}
