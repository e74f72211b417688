package control

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"x0tta6bl4/internal/billing"
	"x0tta6bl4/internal/secfile"
)

// BillingConfig is control.yaml's billing section (docs/billing.md).
type BillingConfig struct {
	// Enabled makes enrolment and renewal need a paid subscription with quota left.
	Enabled bool `yaml:"enabled"`
	// Grace is how long after a subscription expires its nodes may still renew certificates;
	// new enrolments stop at expiry.
	Grace time.Duration `yaml:"grace"`
	// InvoiceTTL is how long an invoice may be paid.
	InvoiceTTL time.Duration `yaml:"invoice_ttl"`
	// LateWindow is how long after its expiry an invoice is still matched, so that a late
	// payment is recorded as late (for a refund by hand) rather than unmatched.
	LateWindow time.Duration `yaml:"late_window"`
	// PollInterval is the watcher's pause between polls; failures back off up to MaxBackoff.
	PollInterval time.Duration `yaml:"poll_interval"`
	MaxBackoff   time.Duration `yaml:"max_backoff"`
	// MaxOpenInvoices bounds each account's unpaid invoices.
	MaxOpenInvoices int               `yaml:"max_open_invoices_per_account"`
	Tron            TronBillingConfig `yaml:"tron"`
	Ton             TonBillingConfig  `yaml:"ton"`
}

// TronBillingConfig is where USDT-TRC20 payments arrive and how they are checked.
type TronBillingConfig struct {
	// Address is our receiving address (Base58 T…); empty disables TRON payments.
	Address string `yaml:"address"`
	// BaseURL is TronGrid or any TRON node serving /v1 and /walletsolidity (a testnet's too).
	BaseURL    string `yaml:"base_url"`
	APIKeyFile string `yaml:"api_key_file"` // a file holding a TronGrid API key (mode 0600)
	// USDTContract is the only contract whose transfers count (mainnet's by default).
	USDTContract string        `yaml:"usdt_contract"`
	Timeout      time.Duration `yaml:"timeout"`
}

// TonBillingConfig is where TON and USDT-on-TON payments arrive.
type TonBillingConfig struct {
	// Address is our wallet (raw 0:… or user-friendly); empty disables TON payments.
	Address    string `yaml:"address"`
	BaseURL    string `yaml:"base_url"`     // Toncenter v3 (or a self-hosted ton-indexer)
	APIKeyFile string `yaml:"api_key_file"` // a file holding a Toncenter API key (mode 0600)
	// USDTJettonWallet is our own USDT jetton wallet (what the USDT master's get_wallet_address
	// returns for Address); empty disables ton-usdt. Only notifications from it count.
	USDTJettonWallet string        `yaml:"usdt_jetton_wallet"`
	Timeout          time.Duration `yaml:"timeout"`
}

func defaultBilling() BillingConfig {
	return BillingConfig{
		Grace: 72 * time.Hour, InvoiceTTL: 24 * time.Hour, LateWindow: 7 * 24 * time.Hour,
		PollInterval: 30 * time.Second, MaxBackoff: 10 * time.Minute, MaxOpenInvoices: 10,
		Tron: TronBillingConfig{BaseURL: "https://api.trongrid.io", USDTContract: billing.USDTTron, Timeout: 15 * time.Second},
		Ton:  TonBillingConfig{BaseURL: "https://toncenter.com", Timeout: 15 * time.Second},
	}
}

func (b *BillingConfig) validate() error {
	if !b.Enabled {
		return nil
	}
	if b.Tron.Address == "" && b.Ton.Address == "" {
		return errors.New("config: billing.enabled needs billing.tron.address or billing.ton.address")
	}
	for name, d := range map[string]time.Duration{"billing.grace": b.Grace, "billing.invoice_ttl": b.InvoiceTTL, "billing.late_window": b.LateWindow,
		"billing.poll_interval": b.PollInterval, "billing.max_backoff": b.MaxBackoff, "billing.tron.timeout": b.Tron.Timeout, "billing.ton.timeout": b.Ton.Timeout} {
		if d <= 0 && !(name == "billing.grace" && d == 0) {
			return fmt.Errorf("config: %s must be positive", name)
		}
	}
	if b.MaxOpenInvoices < 1 {
		return errors.New("config: billing.max_open_invoices_per_account must be at least 1")
	}
	if b.Tron.Address != "" {
		if _, err := billing.ParseTronAddress(b.Tron.Address); err != nil {
			return fmt.Errorf("config: billing.tron.address: %w", err)
		}
		if _, err := billing.ParseTronAddress(b.Tron.USDTContract); err != nil {
			return fmt.Errorf("config: billing.tron.usdt_contract: %w", err)
		}
	}
	if b.Ton.Address != "" {
		if _, err := billing.ParseTonAddress(b.Ton.Address); err != nil {
			return fmt.Errorf("config: billing.ton.address: %w", err)
		}
		if b.Ton.USDTJettonWallet != "" {
			if _, err := billing.ParseTonAddress(b.Ton.USDTJettonWallet); err != nil {
				return fmt.Errorf("config: billing.ton.usdt_jetton_wallet: %w", err)
			}
		}
	}
	return nil
}

// readAPIKey reads a provider API key from a secret file (refused if group or others may read it).
func readAPIKey(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := secfile.ReadSecret(path, 4096)
	if err != nil {
		return "", fmt.Errorf("billing API key: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
