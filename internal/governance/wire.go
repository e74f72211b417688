package governance

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"unicode/utf8"
)

// labelledHash is SHA-256 over a label, a zero byte and the data: a hash of one kind of object can
// never equal a hash of another kind.
func labelledHash(label string, data []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write(data)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// validText accepts printable UTF-8 of at most 255 bytes.
func validText(s string) error {
	if len(s) > 255 {
		return fmt.Errorf("%d bytes, at most 255 allowed", len(s))
	}
	if !utf8.ValidString(s) {
		return errors.New("not UTF-8")
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return errors.New("control character")
		}
	}
	return nil
}
