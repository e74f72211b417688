package meshca

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"

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
	body, err := singlePEM(data, PEMCertificate)
	if err != nil {
		return nil, err
	}
	return ParseCertificate(body)
}

// DecodeRevocationListPEM parses one PEM-wrapped revocation list.
func DecodeRevocationListPEM(data []byte) (*RevocationList, error) {
	body, err := singlePEM(data, PEMRevocationList)
	if err != nil {
		return nil, err
	}
	return ParseRevocationList(body)
}

func singlePEM(data []byte, want string) ([]byte, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("no PEM block found (want %q)", want)
	}
	if block.Type != want {
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, want)
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("PEM headers are not allowed")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the PEM block")
	}
	return block.Bytes, nil
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
