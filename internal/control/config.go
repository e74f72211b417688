package control

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/secfile"
)

// Config is control.yaml. Every field has a default (Defaults) except DataDir; docs/control.md
// lists them all.
type Config struct {
	// Listen is the API's TCP address.
	Listen string `yaml:"listen"`
	// DataDir holds the CA (DataDir/ca unless CADir is set), the server's key and the SQLite database.
	DataDir string `yaml:"data_dir"`
	// CADir is the mesh CA directory (x0tta6bl4 ca init); default DataDir/ca.
	CADir string `yaml:"ca_dir"`
	// InsecureDev serves plain HTTP on a loopback address for local development. Never in production.
	InsecureDev bool `yaml:"insecure_dev"`

	Database   DatabaseConfig   `yaml:"database"`
	TLS        TLSConfig        `yaml:"tls"`
	Auth       AuthConfig       `yaml:"auth"`
	RateLimits RateLimitConfig  `yaml:"rate_limits"`
	Enrollment EnrollmentConfig `yaml:"enrollment"`
	Limits     LimitsConfig     `yaml:"limits"`
	Metrics    MetricsConfig    `yaml:"metrics"`
	Mesh       MeshConfig       `yaml:"mesh"`
	AI         AIConfig         `yaml:"ai"`
	Billing    BillingConfig    `yaml:"billing"`
	// AuditRetention is how long audit log entries are kept.
	AuditRetention time.Duration `yaml:"audit_retention"`
}

// DatabaseConfig selects the store.
type DatabaseConfig struct {
	Driver       string `yaml:"driver"`      // "sqlite" (default) or "postgres"
	Path         string `yaml:"path"`        // SQLite file; default DataDir/control.db
	DSN          string `yaml:"dsn"`         // PostgreSQL; or set X0TTA6BL4_CONTROL_DSN so it stays out of the file
	Synchronous  string `yaml:"synchronous"` // SQLite: "full" (default) or "normal"
	MaxOpenConns int    `yaml:"max_open_conns"`
	// QueryTimeout bounds every database statement (a transaction: twice that), so a frozen
	// database answers requests with 503 in seconds instead of hanging them.
	QueryTimeout time.Duration `yaml:"query_timeout"`
}

// TLSConfig configures the API's certificate.
type TLSConfig struct {
	// CertDuration is the lifetime of the server's X.509-SVID; it is renewed at two thirds of it.
	CertDuration time.Duration `yaml:"cert_duration"`
	// ClassicalCertFile and ClassicalKeyFile are an operator's ECDSA P-256 or Ed25519 certificate
	// chain and key (PEM) for clients that cannot verify ML-DSA-65 (browsers, curl, Prometheus).
	// Without them, a leaf from the classical CA that `control init` made is served.
	ClassicalCertFile string `yaml:"classical_cert_file"`
	ClassicalKeyFile  string `yaml:"classical_key_file"`
	// Hostnames are the DNS names and addresses the issued classical leaf carries; default
	// localhost, 127.0.0.1, ::1 and the listen address's host.
	Hostnames []string `yaml:"hostnames"`
	// RequireHybrid refuses any client that cannot agree X25519MLKEM768, browsers and curl
	// included. Without it, a client that takes the classical certificate may fall back to X25519.
	RequireHybrid bool `yaml:"require_hybrid"`
}

// Argon2Config is the password hashing cost.
type Argon2Config struct {
	Time      uint32 `yaml:"time"`
	MemoryKiB uint32 `yaml:"memory_kib"`
	Threads   uint8  `yaml:"threads"`
}

// AuthConfig configures users and credentials.
type AuthConfig struct {
	SessionTTL time.Duration `yaml:"session_ttl"`
	// Registration is "admin" (only admins create accounts; default) or "open" (anyone may
	// register a viewer account).
	Registration       string        `yaml:"registration"`
	MinPasswordLen     int           `yaml:"min_password_len"`
	Argon2             Argon2Config  `yaml:"argon2"`
	MaxConcurrentHash  int           `yaml:"max_concurrent_hashes"`
	HashWait           time.Duration `yaml:"hash_wait"`
	MaxUsers           int           `yaml:"max_users"`
	MaxSessionsPerUser int           `yaml:"max_sessions_per_user"`
	MaxKeysPerUser     int           `yaml:"max_api_keys_per_user"`
	MaxKeyTTL          time.Duration `yaml:"max_api_key_ttl"` // 0: keys may never expire
}

// RateLimitConfig configures the token buckets.
type RateLimitConfig struct {
	PerIP  auth.LimitConfig `yaml:"per_ip"`  // every request, by client address
	PerKey auth.LimitConfig `yaml:"per_key"` // authenticated requests, by session, API key or node
	// Auth limits login, registration and enrollment attempts by client address.
	Auth       auth.LimitConfig `yaml:"auth"`
	MaxTracked int              `yaml:"max_tracked"` // keys per limiter table
}

// EnrollmentConfig configures join tokens and node certificates.
type EnrollmentConfig struct {
	TokenTTL         time.Duration `yaml:"token_ttl"`
	MaxTokenTTL      time.Duration `yaml:"max_token_ttl"`
	CertDuration     time.Duration `yaml:"cert_duration"`
	MaxCertDuration  time.Duration `yaml:"max_cert_duration"`
	MaxPendingTokens int           `yaml:"max_pending_tokens"`
}

// LimitsConfig bounds what a client can make the server hold.
type LimitsConfig struct {
	MaxBodyBytes   int64 `yaml:"max_body_bytes"`
	MaxReportBytes int64 `yaml:"max_report_bytes"`
	MaxConnections int   `yaml:"max_connections"`
	// MaxConnectionsPerSource bounds one IPv4 address or IPv6 /64. Nodes behind one NAT share an
	// address and each holds up to three long polls, so it is generous by default.
	MaxConnectionsPerSource int           `yaml:"max_connections_per_source"`
	MaxCRLWaiters           int           `yaml:"max_crl_waiters"`
	MaxRecordWaiters        int           `yaml:"max_record_waiters"`
	MaxCRLWait              time.Duration `yaml:"max_crl_wait"` // bounds every long poll's wait (revocation lists, records)
}

// MetricsConfig configures /metrics.
type MetricsConfig struct {
	// Public serves /metrics without authentication (for a Prometheus on a trusted network).
	Public bool `yaml:"public"`
	// Listen, if set, also serves /metrics alone, unauthenticated, over plain HTTP on this address
	// (e.g. 127.0.0.1:9464), for a Prometheus that cannot speak TLS with ML-DSA-65 certificates.
	// Metrics carry node names and link figures, never secrets.
	Listen string `yaml:"listen"`
	// NodeSD writes a Prometheus file_sd file of the enrolled nodes' metrics listeners.
	NodeSD NodeSDConfig `yaml:"node_sd"`
}

// AIConfig configures GET /api/v1/ai/predict.
type AIConfig struct {
	// Model is a detector file made by `x0tta6bl4 ai train` (.x6m, docs/intelligence.md); empty:
	// the model shipped in the binary; "none": no detector, predictions answer 503.
	Model string `yaml:"model"`
	// Advisories: signed link-cost advisories from the detector's judgements (advisory.go).
	Advisories AdvisoryConfig `yaml:"advisories"`
	// Record keeps node reports for training (`ai train --from-records`).
	Record RecordConfig `yaml:"record"`
}

// RecordConfig configures the recording of node reports (docs/control.md, "Recording reports").
type RecordConfig struct {
	// Enabled records the detector's part of node reports (features, kernel features, peers'
	// features). Off by default: it is the mesh's telemetry history.
	Enabled bool `yaml:"enabled"`
	// Every is the least time between two recorded reports of one node: a node that reports more
	// often is recorded once per interval.
	Every time.Duration `yaml:"every"`
	// Retention is how long recorded reports, and incidents that ended, are kept.
	Retention time.Duration `yaml:"retention"`
	// MaxRows and MaxBytes cap the recorded reports; the oldest go first.
	MaxRows  int64 `yaml:"max_rows"`
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxReportBytes is the largest recorded report (its detector part as JSON); larger ones are
	// counted and not recorded.
	MaxReportBytes int64 `yaml:"max_report_bytes"`
}

// MeshConfig configures the mesh view.
type MeshConfig struct {
	// StaleAfter is how old a node's last report may be before it counts as stale.
	StaleAfter time.Duration `yaml:"stale_after"`
}

// Defaults returns the configuration used for every field left out of control.yaml.
func Defaults() Config {
	return Config{
		Listen:   "127.0.0.1:8443",
		Database: DatabaseConfig{Driver: store.SQLite, Synchronous: "full", MaxOpenConns: 16, QueryTimeout: store.DefaultQueryTimeout},
		TLS:      TLSConfig{CertDuration: 7 * 24 * time.Hour},
		Auth: AuthConfig{
			SessionTTL:         12 * time.Hour,
			Registration:       "admin",
			MinPasswordLen:     12,
			Argon2:             Argon2Config{Time: auth.DefaultParams.Time, MemoryKiB: auth.DefaultParams.MemoryKiB, Threads: auth.DefaultParams.Threads},
			MaxConcurrentHash:  4,
			HashWait:           2 * time.Second,
			MaxUsers:           10_000,
			MaxSessionsPerUser: 20,
			MaxKeysPerUser:     50,
		},
		RateLimits: RateLimitConfig{
			PerIP:      auth.LimitConfig{Rate: 100, Burst: 200},
			PerKey:     auth.LimitConfig{Rate: 50, Burst: 100},
			Auth:       auth.LimitConfig{Rate: 0.5, Burst: 10},
			MaxTracked: 10_000,
		},
		Enrollment: EnrollmentConfig{
			TokenTTL:         time.Hour,
			MaxTokenTTL:      7 * 24 * time.Hour,
			CertDuration:     24 * time.Hour,
			MaxCertDuration:  90 * 24 * time.Hour,
			MaxPendingTokens: 1000,
		},
		Limits: LimitsConfig{
			MaxBodyBytes:            64 << 10,
			MaxReportBytes:          1 << 20,
			MaxConnections:          4096,
			MaxConnectionsPerSource: 1024,
			MaxCRLWaiters:           1024,
			MaxRecordWaiters:        1024,
			MaxCRLWait:              60 * time.Second,
		},
		Mesh: MeshConfig{StaleAfter: 60 * time.Second},
		AI: AIConfig{Record: RecordConfig{Every: 5 * time.Second, Retention: 14 * 24 * time.Hour,
			MaxRows: 2_000_000, MaxBytes: 2 << 30, MaxReportBytes: 64 << 10}},
		Billing:        defaultBilling(),
		AuditRetention: 365 * 24 * time.Hour,
	}
}

// LoadConfig reads control.yaml over the defaults. Unknown keys are an error, so a misspelt option
// never silently does nothing.
func LoadConfig(path string) (Config, error) {
	cfg := Defaults()
	data, err := secfile.Read(path, 1<<20)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if cfg.DataDir != "" && !filepath.IsAbs(cfg.DataDir) {
		// Relative to the config file, so the service works from any working directory.
		cfg.DataDir = filepath.Join(filepath.Dir(path), cfg.DataDir)
	}
	if dsn := os.Getenv("X0TTA6BL4_CONTROL_DSN"); dsn != "" && cfg.Database.DSN == "" {
		cfg.Database.DSN = dsn
	}
	return cfg, cfg.Validate()
}

// Validate checks the configuration and fills in derived paths.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("config: data_dir is required")
	}
	if c.CADir == "" {
		c.CADir = filepath.Join(c.DataDir, "ca")
	}
	if c.Database.Path == "" {
		c.Database.Path = filepath.Join(c.DataDir, "control.db")
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("config: listen %q: %w", c.Listen, err)
	}
	if c.InsecureDev {
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("config: insecure_dev serves plain HTTP and is allowed only on a loopback address, not %q", c.Listen)
		}
	}
	if c.Metrics.NodeSD.File != "" {
		if c.Metrics.NodeSD.Port == 0 {
			c.Metrics.NodeSD.Port = 9474
		}
		if c.Metrics.NodeSD.Port < 1 || c.Metrics.NodeSD.Port > 65535 {
			return fmt.Errorf("config: metrics.node_sd.port %d: want 1-65535", c.Metrics.NodeSD.Port)
		}
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			return fmt.Errorf("config: metrics.listen %q: %w", c.Metrics.Listen, err)
		}
	}
	switch c.Database.Driver {
	case store.SQLite, "":
	case store.Postgres:
		if c.Database.DSN == "" {
			return errors.New("config: database.driver postgres needs database.dsn (or X0TTA6BL4_CONTROL_DSN)")
		}
	default:
		return fmt.Errorf("config: database.driver %q: want sqlite or postgres", c.Database.Driver)
	}
	p := auth.Params{Time: c.Auth.Argon2.Time, MemoryKiB: c.Auth.Argon2.MemoryKiB, Threads: c.Auth.Argon2.Threads}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("config: auth.argon2: %w", err)
	}
	switch c.Auth.Registration {
	case "admin", "open":
	default:
		return fmt.Errorf("config: auth.registration %q: want admin or open", c.Auth.Registration)
	}
	positive := map[string]time.Duration{
		"tls.cert_duration": c.TLS.CertDuration, "auth.session_ttl": c.Auth.SessionTTL, "auth.hash_wait": c.Auth.HashWait,
		"enrollment.token_ttl": c.Enrollment.TokenTTL, "enrollment.max_token_ttl": c.Enrollment.MaxTokenTTL,
		"enrollment.cert_duration": c.Enrollment.CertDuration, "enrollment.max_cert_duration": c.Enrollment.MaxCertDuration,
		"mesh.stale_after": c.Mesh.StaleAfter, "audit_retention": c.AuditRetention, "limits.max_crl_wait": c.Limits.MaxCRLWait,
	}
	for name, d := range positive {
		if d <= 0 {
			return fmt.Errorf("config: %s must be positive", name)
		}
	}
	c.AI.Advisories.setDefaults()
	if err := c.AI.Advisories.validate(); err != nil {
		return err
	}
	if (c.TLS.ClassicalCertFile == "") != (c.TLS.ClassicalKeyFile == "") {
		return errors.New("config: tls.classical_cert_file and tls.classical_key_file go together")
	}
	if c.TLS.CertDuration < 10*time.Minute {
		return errors.New("config: tls.cert_duration must be at least 10m")
	}
	if c.Enrollment.TokenTTL > c.Enrollment.MaxTokenTTL || c.Enrollment.CertDuration > c.Enrollment.MaxCertDuration {
		return errors.New("config: enrollment defaults exceed their maxima")
	}
	ints := map[string]int{
		"auth.min_password_len": c.Auth.MinPasswordLen, "auth.max_concurrent_hashes": c.Auth.MaxConcurrentHash,
		"auth.max_users": c.Auth.MaxUsers, "auth.max_sessions_per_user": c.Auth.MaxSessionsPerUser,
		"auth.max_api_keys_per_user": c.Auth.MaxKeysPerUser, "rate_limits.max_tracked": c.RateLimits.MaxTracked,
		"enrollment.max_pending_tokens": c.Enrollment.MaxPendingTokens, "limits.max_connections": c.Limits.MaxConnections,
		"limits.max_connections_per_source": c.Limits.MaxConnectionsPerSource,
		"limits.max_crl_waiters":            c.Limits.MaxCRLWaiters, "limits.max_record_waiters": c.Limits.MaxRecordWaiters,
	}
	for name, v := range ints {
		if v < 1 {
			return fmt.Errorf("config: %s must be at least 1", name)
		}
	}
	if c.Limits.MaxConnectionsPerSource > c.Limits.MaxConnections {
		return fmt.Errorf("config: limits.max_connections_per_source (%d) must be at most limits.max_connections (%d)",
			c.Limits.MaxConnectionsPerSource, c.Limits.MaxConnections)
	}
	if err := c.AI.Record.validate(); err != nil {
		return err
	}
	if c.Limits.MaxBodyBytes < 1024 || c.Limits.MaxReportBytes < 1024 {
		return errors.New("config: limits.max_body_bytes and max_report_bytes must be at least 1024")
	}
	if err := c.Billing.validate(); err != nil {
		return err
	}
	for name, l := range map[string]auth.LimitConfig{"per_ip": c.RateLimits.PerIP, "per_key": c.RateLimits.PerKey, "auth": c.RateLimits.Auth} {
		if _, err := auth.NewLimiter(l, 1); err != nil {
			return fmt.Errorf("config: rate_limits.%s: %w", name, err)
		}
	}
	return nil
}

func (r RecordConfig) validate() error {
	switch {
	case r.Every < 0 || r.Every > time.Hour:
		return fmt.Errorf("config: ai.record.every %s: want 0 (every report) to 1h", r.Every)
	case r.Retention < time.Hour || r.Retention > 366*24*time.Hour:
		return fmt.Errorf("config: ai.record.retention %s: want 1h to 366 days", r.Retention)
	case r.MaxRows < 1 || r.MaxRows > 1_000_000_000:
		return fmt.Errorf("config: ai.record.max_rows %d: want 1 to 1e9", r.MaxRows)
	case r.MaxBytes < 1<<20 || r.MaxBytes > 1<<40:
		return fmt.Errorf("config: ai.record.max_bytes %d: want 1 MiB to 1 TiB", r.MaxBytes)
	case r.MaxReportBytes < 1024 || r.MaxReportBytes > r.MaxBytes:
		return fmt.Errorf("config: ai.record.max_report_bytes %d: want 1024 to ai.record.max_bytes", r.MaxReportBytes)
	}
	return nil
}
