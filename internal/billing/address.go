package billing

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// TronAddress is a TRON account or contract: the 21 bytes 0x41 ‖ 20-byte EVM address.
type TronAddress [21]byte

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// ParseTronAddress reads a Base58Check address (T…) or its 21-byte hex form (41…).
func ParseTronAddress(s string) (TronAddress, error) {
	var a TronAddress
	if len(s) == 42 && strings.HasPrefix(s, "41") {
		b, err := hex.DecodeString(s)
		if err != nil {
			return a, fmt.Errorf("TRON address %q: %w", trunc(s), err)
		}
		copy(a[:], b)
		return a, nil
	}
	if len(s) < 30 || len(s) > 40 {
		return a, fmt.Errorf("TRON address %q: want 34 Base58 characters", trunc(s))
	}
	n := new(big.Int)
	for i := 0; i < len(s); i++ {
		d := strings.IndexByte(base58Alphabet, s[i])
		if d < 0 {
			return a, fmt.Errorf("TRON address %q: %q is not Base58", trunc(s), s[i])
		}
		n.Mul(n, big.NewInt(58))
		n.Add(n, big.NewInt(int64(d)))
	}
	b := n.Bytes()
	if len(b) != 25 {
		return a, fmt.Errorf("TRON address %q: decodes to %d bytes, want 25", trunc(s), len(b))
	}
	sum := sha256.Sum256(b[:21])
	sum = sha256.Sum256(sum[:])
	if !bytes.Equal(sum[:4], b[21:]) {
		return a, fmt.Errorf("TRON address %q: checksum mismatch", s)
	}
	if b[0] != 0x41 {
		return a, fmt.Errorf("TRON address %q: prefix 0x%02x, want 0x41", s, b[0])
	}
	copy(a[:], b[:21])
	return a, nil
}

// String is the Base58Check form.
func (a TronAddress) String() string {
	sum := sha256.Sum256(a[:])
	sum = sha256.Sum256(sum[:])
	full := append(append([]byte{}, a[:]...), sum[:4]...)
	n := new(big.Int).SetBytes(full)
	var out []byte
	mod := new(big.Int)
	for n.Sign() > 0 {
		n.DivMod(n, big.NewInt(58), mod)
		out = append(out, base58Alphabet[mod.Int64()])
	}
	for _, c := range full {
		if c != 0 {
			break
		}
		out = append(out, '1')
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}

// evm is the 20-byte address as it appears in event logs and topics.
func (a TronAddress) evm() []byte { return a[1:] }

// TonAddress is a TON account: workchain and 256-bit account ID.
type TonAddress struct {
	Workchain int8
	Hash      [32]byte
}

// ParseTonAddress reads the raw form (0:hex, as Toncenter v3 answers) or the 48-character
// user-friendly form (EQ…/UQ…, base64 or base64url, CRC16 checked).
func ParseTonAddress(s string) (TonAddress, error) {
	var a TonAddress
	if wc, h, ok := strings.Cut(s, ":"); ok {
		w, err := strconv.ParseInt(wc, 10, 8)
		if err != nil {
			return a, fmt.Errorf("TON address %q: workchain: %w", trunc(s), err)
		}
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return a, fmt.Errorf("TON address %q: want 64 hex digits after the workchain", trunc(s))
		}
		a.Workchain = int8(w)
		copy(a.Hash[:], b)
		return a, nil
	}
	if len(s) != 48 {
		return a, fmt.Errorf("TON address %q: want raw wc:hex or 48 user-friendly characters", trunc(s))
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.NewReplacer("+", "-", "/", "_").Replace(s))
	if err != nil || len(b) != 36 {
		return a, fmt.Errorf("TON address %q: not base64 of 36 bytes", s)
	}
	if crc16(b[:34]) != uint16(b[34])<<8|uint16(b[35]) {
		return a, fmt.Errorf("TON address %q: checksum mismatch", s)
	}
	if tag := b[0] &^ 0x80; tag != 0x11 && tag != 0x51 {
		return a, fmt.Errorf("TON address %q: unknown tag 0x%02x", s, b[0])
	}
	a.Workchain = int8(b[1])
	copy(a.Hash[:], b[2:34])
	return a, nil
}

// String is the raw form with lower-case hex.
func (a TonAddress) String() string {
	return strconv.Itoa(int(a.Workchain)) + ":" + hex.EncodeToString(a.Hash[:])
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021), the checksum of user-friendly TON addresses.
func crc16(b []byte) uint16 {
	var c uint16
	for _, x := range b {
		c ^= uint16(x) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
	}
	return c
}
