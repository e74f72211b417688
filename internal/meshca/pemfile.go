package meshca

import (
	"encoding/pem"
	"fmt"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/secfile"
)

// PEM block types of the files the CA writes.
const (
	PEMCertificate    = "X0TTA6BL4 CERTIFICATE"
	PEMRevocationList = "X0TTA6BL4 REVOCATION LIST"
)

// EncodeCertificatePEM wraps a certificate in PEM.
func EncodeCertificatePEM(c *Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: PEMCertificate, Bytes: c.Bytes()})
}

// EncodeRevocationListPEM wraps a revocation list in PEM.
func EncodeRevocationListPEM(l *RevocationList) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: PEMRevocationList, Bytes: l.Bytes()})
}

// DecodeCertificatePEM parses one PEM-wrapped certificate.
func DecodeCertificatePEM(data []byte) (*Certificate, error) {
	body, err := identity.DecodePEM(data, PEMCertificate)
	if err != nil {
		return nil, err
	}
	return ParseCertificate(body)
}

// DecodeRevocationListPEM parses one PEM-wrapped revocation list.
func DecodeRevocationListPEM(data []byte) (*RevocationList, error) {
	body, err := identity.DecodePEM(data, PEMRevocationList)
	if err != nil {
		return nil, err
	}
	return ParseRevocationList(body)
}

// LoadCertificateFile reads a PEM certificate file.
func LoadCertificateFile(path string) (*Certificate, error) {
	data, err := secfile.Read(path, 2*MaxCertificateSize)
	if err != nil {
		return nil, err
	}
	c, err := DecodeCertificatePEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// LoadRevocationListFile reads a PEM revocation list file.
func LoadRevocationListFile(path string) (*RevocationList, error) {
	data, err := secfile.Read(path, 2*MaxCRLSize)
	if err != nil {
		return nil, err
	}
	l, err := DecodeRevocationListPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}
