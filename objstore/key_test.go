package objstore_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"testing"

	"github.com/lifeline-dr/lifeline/objstore"
)

func TestKeyFromSecret(t *testing.T) {
	raw := sha256Sum("a random key")
	passphrase, err := objstore.KeyFromSecret("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, secret string
		want         []byte
	}{
		{"hex", hex.EncodeToString(raw), raw},
		{"hex upper", hexUpper(raw), raw},
		{"base64", base64.StdEncoding.EncodeToString(raw), raw},
		{"base64 raw url", base64.RawURLEncoding.EncodeToString(raw), raw},
		{"trailing newline", hex.EncodeToString(raw) + "\n", raw},
		{"passphrase", "correct horse battery staple", passphrase},
		{"passphrase from a file", "correct horse battery staple\r\n", passphrase},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := objstore.KeyFromSecret(c.secret)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, c.want) {
				t.Errorf("KeyFromSecret(%q) = %x, want %x", c.secret, got, c.want)
			}
		})
	}
	t.Run("not quite a key is a passphrase", func(t *testing.T) {
		for _, s := range []string{
			hex.EncodeToString(raw)[:63],                // 63 hex characters
			base64.StdEncoding.EncodeToString(raw[:31]), // 31 bytes
			"zz" + hex.EncodeToString(raw)[2:],          // not hex
		} {
			got, err := objstore.KeyFromSecret(s)
			if err != nil || len(got) != objstore.KeySize || bytes.Equal(got, raw) {
				t.Errorf("KeyFromSecret(%q) = %x, %v; want a derived 32-byte key", s, got, err)
			}
		}
	})
	t.Run("distinct passphrases", func(t *testing.T) {
		other, _ := objstore.KeyFromSecret("correct horse battery stapler")
		if bytes.Equal(other, passphrase) {
			t.Errorf("two passphrases give the same key")
		}
	})
	for _, s := range []string{"", "\n", "   "} {
		if _, err := objstore.KeyFromSecret(s); err == nil {
			t.Errorf("KeyFromSecret(%q) succeeded", s)
		}
	}
}

func hexUpper(b []byte) string {
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
