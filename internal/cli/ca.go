package cli

import (
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/secfile"
)

const defaultCADir = "x0tta6bl4-ca"

func runCAInit(e *env, args []string) error {
	fs := newFlags(e, "ca init", "--trust-domain example.org [--dir DIR] [--name NAME] [--groups a,b] [--duration 8760h]")
	dir := fs.String("dir", defaultCADir, "CA directory to create")
	td := fs.String("trust-domain", "", "SPIFFE trust domain of the mesh, e.g. mesh.example.org")
	name := fs.String("name", "root", "CA name")
	groups := fs.String("groups", "", "comma-separated groups this CA may grant (empty: any)")
	duration := fs.Duration("duration", 365*24*time.Hour, "CA certificate lifetime")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "trust-domain", *td); err != nil {
		return err
	}
	s, err := meshca.InitStore(*dir, meshca.CAOptions{
		TrustDomain: *td, Name: *name, Groups: splitList(*groups), Duration: *duration,
	}, e.now())
	if err != nil {
		return err
	}
	c := s.CA().Certificate()
	fmt.Fprintf(e.stdout, "created CA %q for trust domain %s in %s\n", c.Name, c.TrustDomain, *dir)
	fmt.Fprintf(e.stdout, "  key id:    %s\n  valid:     %s to %s\n  groups:    %s\n",
		c.SignPublicKey.ID(), c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), groupList(c.Groups))
	fmt.Fprintf(e.stdout, "  files:     ca.key (secret, 0600), ca.crt, ca-x509.pem, crl.pem\n")
	return nil
}

func runCAIssue(e *env, args []string) error {
	fs := newFlags(e, "ca issue", "--name NODE [--groups a,b] [--duration 24h] [--pub node.pub] [--out DIR]")
	dir := fs.String("dir", defaultCADir, "CA directory")
	name := fs.String("name", "", "node name (lowercase letters, digits, '-')")
	groups := fs.String("groups", "", "comma-separated groups")
	duration := fs.Duration("duration", 24*time.Hour, "certificate lifetime")
	pub := fs.String("pub", "", "node public key file from 'keys generate'; without it, keys are generated and written to --out")
	out := fs.String("out", ".", "directory for <name>.crt, <name>-svid.pem and, with generated keys, <name>.key")
	svid := fs.Bool("svid", true, "also write an X.509-SVID for TLS")
	force := fs.Bool("force", false, "replace existing files in --out")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "name", *name); err != nil {
		return err
	}
	if err := identity.ValidateNodeName(*name); err != nil {
		return err
	}
	s, err := meshca.OpenStore(*dir)
	if err != nil {
		return err
	}
	var pubKey *identity.NodePublicKey
	var newKey *identity.NodeKey
	if *pub != "" {
		if pubKey, err = identity.LoadNodePublicKeyFile(*pub); err != nil {
			return err
		}
	} else {
		if newKey, err = identity.GenerateNodeKey(); err != nil {
			return err
		}
		pubKey = newKey.Public()
	}
	base := filepath.Join(*out, *name)
	outputs := []string{base + ".crt"}
	if newKey != nil {
		outputs = append(outputs, base+".key")
	}
	if *svid {
		outputs = append(outputs, base+"-svid.pem")
	}
	if !*force {
		// Refuse before signing, so a refused run leaves neither a stray key nor a recorded certificate.
		for _, p := range outputs {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s already exists (remove it first or use --force)", p)
			}
		}
	}
	c, err := s.Issue(meshca.IssueRequest{Name: *name, Groups: splitList(*groups), PublicKey: pubKey, Duration: *duration}, e.now())
	if err != nil {
		return err
	}
	if newKey != nil {
		if err := identity.WriteNodeKeyFile(base+".key", newKey, *force); err != nil {
			return err
		}
	}
	if err := secfile.Write(base+".crt", meshca.EncodeCertificatePEM(c), 0o644, *force); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "issued %s\n  serial:    %s\n  overlay:   %s\n  groups:    %s\n  valid:     %s to %s\n  cert:      %s.crt\n",
		c.SPIFFEID(), c.Serial, c.Overlay, groupList(c.Groups),
		c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), base)
	if newKey != nil {
		fmt.Fprintf(e.stdout, "  key:       %s.key (mode 0600)\n", base)
	}
	if *svid {
		x, err := s.CA().IssueSVID(s.X509CA(), c)
		if err != nil {
			return err
		}
		if err := secfile.Write(base+"-svid.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: x.Raw}), 0o644, *force); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "  svid:      %s-svid.pem (X.509, ML-DSA-65)\n", base)
	}
	return nil
}

func runCAList(e *env, args []string) error {
	fs := newFlags(e, "ca list", "[--dir DIR]")
	dir := fs.String("dir", defaultCADir, "CA directory")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	s, err := meshca.OpenStore(*dir)
	if err != nil {
		return err
	}
	certs, err := s.Issued()
	if err != nil {
		return err
	}
	crl, err := s.RevocationList()
	if err != nil {
		return err
	}
	now := e.now()
	fmt.Fprintf(e.stdout, "%-32s  %-20s  %-9s  %-20s  %s\n", "SERIAL", "NAME", "STATUS", "EXPIRES", "GROUPS")
	for _, c := range certs {
		status := "valid"
		switch {
		case crl.Revokes(c):
			status = "revoked"
		case !now.Before(c.NotAfter):
			status = "expired"
		}
		fmt.Fprintf(e.stdout, "%-32s  %-20s  %-9s  %-20s  %s\n", c.Serial, c.Name, status, c.NotAfter.Format(time.RFC3339), groupList(c.Groups))
	}
	return nil
}

func runCARevoke(e *env, args []string) error {
	fs := newFlags(e, "ca revoke", "(--serial HEX | --name NODE) [--dir DIR]")
	dir := fs.String("dir", defaultCADir, "CA directory")
	serialFlag := fs.String("serial", "", "serial of the certificate to revoke")
	name := fs.String("name", "", "revoke every certificate issued to this node name, and its keys")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if (*serialFlag == "") == (*name == "") {
		fmt.Fprintln(e.stderr, "give exactly one of --serial or --name")
		fs.Usage()
		return errUsage
	}
	s, err := meshca.OpenStore(*dir)
	if err != nil {
		return err
	}
	var serials []meshca.Serial
	var keys []identity.KeyID
	if *serialFlag != "" {
		sn, err := meshca.ParseSerial(*serialFlag)
		if err != nil {
			return err
		}
		serials = append(serials, sn)
	} else {
		certs, err := s.Issued()
		if err != nil {
			return err
		}
		for _, c := range certs {
			if c.Name == *name {
				serials = append(serials, c.Serial)
				keys = append(keys, c.SignPublicKey.ID())
			}
		}
		if len(serials) == 0 {
			return fmt.Errorf("this CA has issued no certificate to %q", *name)
		}
	}
	l, err := s.Revoke(serials, keys, e.now())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "revoked %d certificate(s); revocation list %d now lists %d serial(s) and %d key(s): %s\n",
		len(serials), l.Number, len(l.Serials), len(l.Keys), s.RevocationListPath())
	return nil
}

func runCACRL(e *env, args []string) error {
	fs := newFlags(e, "ca crl", "[--dir DIR] [--json]")
	dir := fs.String("dir", defaultCADir, "CA directory")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	s, err := meshca.OpenStore(*dir)
	if err != nil {
		return err
	}
	l, err := s.RevocationList()
	if err != nil {
		return err
	}
	return printRevocationList(e, l, *asJSON, "verified against "+s.CertificatePath())
}

func loadVerifier(caPath, crlPath string) (*meshca.Verifier, error) {
	caCert, err := meshca.LoadCertificateFile(caPath)
	if err != nil {
		return nil, err
	}
	v, err := meshca.NewVerifier(caCert)
	if err != nil {
		return nil, err
	}
	if crlPath != "" {
		l, err := meshca.LoadRevocationListFile(crlPath)
		if err != nil {
			return nil, err
		}
		if _, err := v.UpdateCRL(l); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func runCertVerify(e *env, args []string) error {
	fs := newFlags(e, "cert verify", "--ca ca.crt [--crl crl.pem] CERT")
	caPath := fs.String("ca", filepath.Join(defaultCADir, "ca.crt"), "trusted CA certificate")
	crlPath := fs.String("crl", "", "revocation list to apply")
	if err := e.parse(fs, args, 1); err != nil {
		return err
	}
	v, err := loadVerifier(*caPath, *crlPath)
	if err != nil {
		return err
	}
	c, err := meshca.LoadCertificateFile(fs.Arg(0))
	if err != nil {
		return err
	}
	if err := v.Verify(c, e.now()); err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	fmt.Fprintf(e.stdout, "%s: OK (%s, overlay %s)\n", fs.Arg(0), c.SPIFFEID(), c.Overlay)
	return nil
}
