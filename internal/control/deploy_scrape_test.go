package control

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"x0tta6bl4/internal/control/api"
)

// TestComposePrometheusScrapesTLS: compose's Prometheus scrapes the control plane through its TLS
// listener, as its configuration says: the job in deploy/prometheus/prometheus.yml is followed to
// the letter by a Go client (TLS 1.3, only the classical CA that control-init publishes, its
// server_name, a viewer key as bearer) against a control plane configured like
// deploy/compose/control.yaml, and gets /metrics; the files that carry the CA and the key to
// Prometheus are wired in docker-compose.yml.
func TestComposePrometheusScrapesTLS(t *testing.T) {
	var prom struct {
		ScrapeConfigs []scrapeJob `yaml:"scrape_configs"`
	}
	readYAML(t, "prometheus/prometheus.yml", &prom)
	i := slices.IndexFunc(prom.ScrapeConfigs, func(j scrapeJob) bool { return j.JobName == "x0tta6bl4-control" })
	if i < 0 {
		t.Fatal("prometheus.yml has no x0tta6bl4-control job")
	}
	job := prom.ScrapeConfigs[i]
	if job.Scheme != "https" || job.TLS.CAFile == "" || job.TLS.MinVersion != "TLS13" || job.Authorization.Type != "Bearer" ||
		job.Authorization.CredentialsFile == "" || len(job.StaticConfigs) != 1 || len(job.StaticConfigs[0].Targets) != 1 {
		t.Fatalf("the control job does not scrape over TLS with a CA and a bearer key: %+v", job)
	}
	target := job.StaticConfigs[0].Targets[0]
	host, _, _ := net.SplitHostPort(target)
	serverName := cmp.Or(job.TLS.ServerName, host)

	// The control plane as compose configures it: the classical leaf names what Prometheus checks,
	// and the plain metrics listener is reachable from inside the container only.
	t.Setenv("X0TTA6BL4_CONTROL_DSN", "postgres://u:p@postgres:5432/x0tta6bl4?sslmode=disable")
	composeCfg, err := LoadConfig(filepath.Join(deployDir, "compose", "control.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(composeCfg.TLS.Hostnames, serverName) {
		t.Errorf("compose control.yaml tls.hostnames %v lacks %q, the name Prometheus verifies", composeCfg.TLS.Hostnames, serverName)
	}
	if mh, _, _ := net.SplitHostPort(composeCfg.Metrics.Listen); composeCfg.Metrics.Listen != "" && !net.ParseIP(mh).IsLoopback() {
		t.Errorf("compose metrics.listen %s: the plain listener must stay inside the container", composeCfg.Metrics.Listen)
	}

	// docker-compose.yml carries the CA from control-init to Prometheus, and the key directory.
	var compose struct {
		Services map[string]struct {
			Command any      `yaml:"command"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	readYAML(t, "docker-compose.yml", &compose)
	mounts := func(svc, dir string) string {
		for _, v := range compose.Services[svc].Volumes {
			if f := strings.Split(v, ":"); len(f) >= 2 && f[1] == dir {
				return f[0]
			}
		}
		t.Errorf("service %s mounts nothing at %s", svc, dir)
		return ""
	}
	caVolume := mounts("prometheus", path.Dir(job.TLS.CAFile))
	if src := mounts("prometheus", path.Dir(job.Authorization.CredentialsFile)); src != "" {
		if _, err := os.Stat(filepath.Join(deployDir, src)); err != nil {
			t.Errorf("the key directory %s: %v (a missing bind source becomes an empty directory)", src, err)
		}
	}
	published := ""
	for _, v := range compose.Services["control-init"].Volumes {
		if f := strings.Split(v, ":"); len(f) >= 2 && f[0] == caVolume {
			published = f[1] + "/" + path.Base(job.TLS.CAFile)
		}
	}
	if cmd, _ := yaml.Marshal(compose.Services["control-init"].Command); published == "" || !strings.Contains(string(cmd), "console-ca.pem "+published) {
		t.Errorf("control-init does not copy console-ca.pem into volume %q at %q: %s", caVolume, published, cmd)
	}

	// The scrape, as Prometheus makes it, against a control plane with compose's hostnames.
	h := sqliteHarness(t, func(c *Config) { c.TLS.Hostnames = composeCfg.TLS.Hostnames })
	pins, err := initClassical(h.cfg.DataDir, h.srv.now())
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(pins.CACertFile)
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := h.apiClient(h.adminKey).CreateAPIKey(t.Context(), api.CreateAPIKeyRequest{Name: "prometheus", Role: "viewer"})
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(h.url, "https://")
	scrape := func(name, key string) (int, string, error) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS13},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr) // "control" resolves to the harness
			}}}
		req, _ := http.NewRequest("GET", job.Scheme+"://"+target+job.MetricsPath, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	code, body, err := scrape(serverName, viewer.Key)
	if err != nil || code != 200 || !strings.Contains(body, `x0tta6bl4_control_tls_handshakes_total{certificate="ecdsa-p256"`) {
		t.Fatalf("Prometheus' scrape: %d %v: %.300s", code, err, body)
	}
	if code, _, err := scrape(serverName, ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("a scrape without the key: %d %v, want 401", code, err)
	}
	if _, _, err := scrape("elsewhere.example", viewer.Key); err == nil {
		t.Error("a scrape verifying another name succeeded: the server name is not checked")
	}
}

// scrapeJob is the part of a Prometheus scrape_config the test follows.
type scrapeJob struct {
	JobName     string `yaml:"job_name"`
	Scheme      string `yaml:"scheme"`
	MetricsPath string `yaml:"metrics_path"`
	TLS         struct {
		CAFile     string `yaml:"ca_file"`
		ServerName string `yaml:"server_name"`
		MinVersion string `yaml:"min_version"`
	} `yaml:"tls_config"`
	Authorization struct {
		Type            string `yaml:"type"`
		CredentialsFile string `yaml:"credentials_file"`
	} `yaml:"authorization"`
	StaticConfigs []struct {
		Targets []string `yaml:"targets"`
	} `yaml:"static_configs"`
}

func readYAML(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("deploy/%s: %v", name, err)
	}
}
