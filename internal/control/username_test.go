package control

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestUsernameRefusesInvisibleAndBidi(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"admin\u200b", "invisible"},            // zero-width space
		{"ad\u200dmin", "invisible"},            // zero-width joiner
		{"\ufeffadmin", "invisible"},            // byte order mark
		{"admin\u202egnp.exe", "bidirectional"}, // right-to-left override
		{"a\u2066b\u2069", "bidirectional"},     // isolates
		{"a\u200fb", "bidirectional"},           // right-to-left mark
		{"adm\u3164in", "invisible"},            // Hangul filler
		{"a\ufe0fb", "invisible"},               // variation selector
		{"a\u00a0b", "U+0020"},                  // no-break space
		{"a\u2028b", "invisible"},               // line separator
		{"a\ufffdb", "U+FFFD"},
		{"bad\xffutf8", "UTF-8"},
	} {
		err := validUsername(c.name)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error about %s", c.name, err, c.want)
		}
	}
	for _, ok := range []string{"olga", "Ölga Müller", "用户", "o'brien; DROP TABLE users", "имя-1"} {
		if err := validUsername(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}

// A body that is not UTF-8 is refused, not silently turned into U+FFFD by the JSON decoder.
func TestInvalidUTF8BodyRefused(t *testing.T) {
	h := sqliteHarness(t, nil)
	body := []byte("{\"username\":\"ol\xe9ga\",\"password\":\"" + testPassword + "\"}")
	req, _ := http.NewRequest("POST", h.url+"/api/v1/users/register", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+h.adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(msg), "UTF-8") {
		t.Fatalf("invalid UTF-8 body: %d %s", resp.StatusCode, msg)
	}
	if r := h.do("POST", "/api/v1/users/register", h.adminKey, map[string]string{"username": "admin\u202e", "password": testPassword}); r.status != 400 ||
		!strings.Contains(string(r.body), "bidirectional") {
		t.Fatalf("bidi username: %d %s", r.status, r.body)
	}
}
