package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// scramIterations is PostgreSQL's default (scram_iterations, 4096).
const scramIterations = 4096

// scramVerifier is what PostgreSQL stores for a password under
// scram-sha-256 (RFC 5802 and 7677): it lets the server check a client
// that knows the password without holding the password. PostgreSQL accepts
// it in CREATE/ALTER ROLE ... PASSWORD as it is, which keeps the password
// itself out of statements.
//
// The password is used as it is, without SASLprep: PostgreSQL does the
// same for passwords that are not valid UTF-8 or that SASLprep leaves
// alone, which holds for every printable ASCII password; others are sent
// in the clear and hashed by the server.
func scramVerifier(password string) (string, error) {
	for _, c := range []byte(password) {
		if c < 0x20 || c > 0x7e {
			return password, nil
		}
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(stored[:]), b64(mac(salted, "Server Key"))), nil
}
