package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"x0tta6bl4/internal/identity"
)

func runKeysGenerate(e *env, args []string) error {
	fs := newFlags(e, "keys generate", "--out node.key")
	out := fs.String("out", "", "private key file to write (mode 0600); the public key goes next to it, its extension replaced by .pub (node.key: node.pub; node: node.pub)")
	force := fs.Bool("force", false, "replace existing files")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "out", *out); err != nil {
		return err
	}
	key, err := identity.GenerateNodeKey()
	if err != nil {
		return err
	}
	pubPath := publicKeyPath(*out)
	if err := identity.WriteNodeKeyFile(*out, key, *force); err != nil {
		return err
	}
	if err := identity.WriteNodePublicKeyFile(pubPath, key.Public(), *force); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "private key: %s (mode 0600)\npublic key:  %s\noverlay:     %s\nkey id:      %s\n",
		*out, pubPath, key.Public().OverlayAddress(), key.Sign.PublicKey().ID())
	return nil
}

// publicKeyPath turns node.key into node.pub, and anything else into <name>.pub.
func publicKeyPath(priv string) string {
	return strings.TrimSuffix(priv, filepath.Ext(priv)) + ".pub"
}
