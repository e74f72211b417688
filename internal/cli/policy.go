package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/policy"
	"x0tta6bl4/internal/secfile"
)

// ctlPolicyGet prints the mesh access policy as YAML source (what 'ctl policy set' reads), headed by
// a comment with its version.
func ctlPolicyGet(e *env, args []string) error {
	fs, c := ctlFlags(e, "policy get", "[--json]")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.Policy, error) { return a.Policy(ctx) })
	if err != nil {
		return err
	}
	if *c.asJSON {
		return c.print(e, res, nil)
	}
	if res.Version == 0 {
		fmt.Fprintln(e.stdout, "# no access policy set: nodes apply their local firewall rules alone")
		return nil
	}
	src, err := policySourceYAML(res.Source)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "# access policy version %d of %s, issued %s, signed by CA %s\n%s",
		res.Version, res.TrustDomain, res.IssuedAt.Format(time.RFC3339), res.Issuer, src)
	return nil
}

func policySourceYAML(src *policy.Source) ([]byte, error) {
	if src == nil {
		return nil, nil
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(src); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// ctlPolicySet reads a policy source (YAML or JSON) and sets it; the control plane runs its tests,
// numbers and signs it.
func ctlPolicySet(e *env, args []string) error {
	fs, c := ctlFlags(e, "policy set", "--file policy.yaml|-")
	file := fs.String("file", "", "the policy source, YAML or JSON ('-': standard input); docs/control.md, \"Policy\"")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "file", *file); err != nil {
		return err
	}
	var data []byte
	var err error
	if *file == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, policy.MaxSourceSize+1))
	} else {
		data, err = secfile.Read(*file, policy.MaxSourceSize)
	}
	if err != nil {
		return err
	}
	src, err := policy.ParseSource(data)
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.Policy, error) { return a.SetPolicy(ctx, src) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		fmt.Fprintf(w, "access policy version %d set: %d grants, %d tests passed; nodes long-polling the control plane apply it now\n",
			res.Version, len(src.Grants), len(src.Tests))
	})
}
