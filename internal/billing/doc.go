// Package billing decides whether an on-chain payment pays an invoice: it decodes the answers of
// TronGrid (TRON) and Toncenter v3 (TON), verifies a transfer against the rules of its network
// (official USDT contract or our own USDT jetton wallet, our receiving address, success and
// finality), and matches it to an open invoice by exact amount (TRON) or by the reference in its
// comment (TON). docs/billing.md has the rules and the threat model.
//
// It is pure: fed response bodies and a clock, it opens no socket and never reads the time. It must
// never hold money in a float, never accept a token by its name or symbol, and never read more of
// a provider's body than MaxBody.
package billing
