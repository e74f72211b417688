package billing

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Networks an invoice can be paid on.
const (
	TronUSDT = "tron-usdt" // USDT as a TRC-20 token on TRON; 6 decimals
	TonUSDT  = "ton-usdt"  // USDT as a jetton on TON; 6 decimals
	Ton      = "ton"       // native Toncoin, in nanotons; 9 decimals
)

// Decimals is the number of decimal places of each network's smallest unit.
var Decimals = map[string]int{TronUSDT: 6, TonUSDT: 6, Ton: 9}

// ValidNetwork reports whether n names a network this package verifies.
func ValidNetwork(n string) bool { _, ok := Decimals[n]; return ok }

// MaxBody is the most of a provider's response this package reads; a larger body is refused.
const MaxBody = 4 << 20

// ErrAmount is wrapped by every amount that is not a plain non-negative integer fitting int64.
var ErrAmount = errors.New("amount")

// ParseAmount reads an amount in the smallest unit written as decimal digits (the way every
// provider writes amounts, as JSON strings). Amounts are int64 everywhere: USDT's and Toncoin's
// whole supplies fit, and the database stores BIGINT. Larger values are refused, never rounded.
func ParseAmount(s string) (int64, error) {
	if s == "" || len(s) > 19 {
		return 0, fmt.Errorf("%w %q: want 1-19 decimal digits", ErrAmount, trunc(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w %q: want decimal digits only", ErrAmount, trunc(s))
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w %q: larger than %d", ErrAmount, trunc(s), int64(math.MaxInt64))
	}
	return v, nil
}

// amountFromWord reads a 256-bit big-endian word (an EVM event's data) as an amount.
func amountFromWord(b []byte) (int64, error) {
	v := new(big.Int).SetBytes(b)
	if !v.IsInt64() {
		return 0, fmt.Errorf("%w %s: larger than %d", ErrAmount, v, int64(math.MaxInt64))
	}
	return v.Int64(), nil
}

// FormatAmount writes an amount in whole units with the network's decimals, for people.
func FormatAmount(network string, v int64) string {
	d, ok := Decimals[network]
	if !ok {
		return strconv.FormatInt(v, 10)
	}
	s := strconv.FormatInt(v, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for len(s) <= d {
		s = "0" + s
	}
	out := s[:len(s)-d] + "." + s[len(s)-d:]
	if neg {
		out = "-" + out
	}
	return out
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
