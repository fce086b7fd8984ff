package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lifeline-dr/lifeline/store"
)

// TokenPrefix starts every token, so that one found in a log or a paste
// is recognisable (and secret scanners can be taught it).
const TokenPrefix = "llt_"

// NewToken makes a token: TokenPrefix and 32 random bytes (base64url).
// Only its hash is stored.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// Hash is the hex SHA-256 of a token, as stored.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// CreateToken makes a token of a role, stores its record (hash only) and
// returns the token, which is shown once.
func CreateToken(ctx context.Context, s *store.Store, name string, role Role, by string, replace bool) (string, store.Token, error) {
	if role == Public {
		return "", store.Token{}, errors.New("a token needs a role: viewer, operator or approver")
	}
	tok, err := NewToken()
	if err != nil {
		return "", store.Token{}, err
	}
	rec := store.Token{Name: name, Role: role.String(), SHA256: Hash(tok), Created: time.Now().UTC(), CreatedBy: by}
	if err := s.CreateToken(ctx, rec, replace); err != nil {
		return "", rec, err
	}
	return tok, rec, nil
}

// Identity is who calls: a token's name and role.
type Identity struct {
	Name string `json:"name"`
	Role string `json:"role"`
	role Role
}

// Actor is how the audit log names the caller: the token, and whom the
// caller says they act for when they say so.
func (id Identity) Actor(as string) string {
	a := "token:" + id.Name
	if as = strings.TrimSpace(as); as != "" {
		a += " (as " + as + ")"
	}
	return a
}

// TokenLookup finds the token a request presents. ok is false for an
// unknown token; err is set when tokens cannot be checked at all (the
// control store was never read).
type TokenLookup interface {
	Lookup(token string) (Identity, bool, error)
}

// ErrTokensUnknown: the tokens have not been read from the control store
// yet.
var ErrTokensUnknown = errors.New("the API tokens have not been read from the control store yet")

// TokenCache follows the tokens in the control store by watch, so that
// checking a request's token reads no etcd: a token revoked stops working
// as soon as the watch delivers the deletion.
type TokenCache struct {
	S   *store.Store
	Log *slog.Logger

	mu     sync.RWMutex
	byHash map[string]store.Token
	ready  bool

	readMu   sync.Mutex
	lastRead time.Time
}

// missReadEvery bounds the reads of the control store that unknown tokens
// cause: a token made a moment ago may not have come through the watch
// yet, so a miss reads the tokens again, at most this often.
const missReadEvery = 200 * time.Millisecond

// Run follows the tokens until ctx ends, watching again after a failure.
func (c *TokenCache) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := c.S.WatchTokens(ctx, c.set)
		if ctx.Err() != nil {
			return
		}
		if c.Log != nil {
			c.Log.Warn("api: watching tokens", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (c *TokenCache) set(all map[string]store.Token) {
	m := make(map[string]store.Token, len(all))
	for _, t := range all {
		m[t.SHA256] = t
	}
	c.mu.Lock()
	c.byHash, c.ready = m, true
	c.mu.Unlock()
}

func (c *TokenCache) find(hash string) (store.Token, bool, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, ok := c.byHash[hash]
	return t, ok, c.ready
}

// Lookup implements TokenLookup.
func (c *TokenCache) Lookup(token string) (Identity, bool, error) {
	hash := Hash(token)
	t, ok, ready := c.find(hash)
	if !ok && c.S != nil {
		c.readMu.Lock()
		if time.Since(c.lastRead) >= missReadEvery {
			c.lastRead = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if all, err := c.S.Tokens(ctx); err == nil {
				c.set(all)
			}
			cancel()
		}
		c.readMu.Unlock()
		t, ok, ready = c.find(hash)
	}
	if !ready {
		return Identity{}, false, ErrTokensUnknown
	}
	if !ok {
		return Identity{}, false, nil
	}
	r, err := ParseRole(t.Role)
	if err != nil {
		return Identity{}, false, fmt.Errorf("token %s: %w", t.Name, err)
	}
	return Identity{Name: t.Name, Role: t.Role, role: r}, true, nil
}

// StaticTokens is a fixed set of tokens (token → name and role), for tests
// and tools that run without a control store.
type StaticTokens map[string]Identity

// Lookup implements TokenLookup.
func (s StaticTokens) Lookup(token string) (Identity, bool, error) {
	id, ok := s[token]
	if !ok {
		return Identity{}, false, nil
	}
	r, err := ParseRole(id.Role)
	if err != nil {
		return Identity{}, false, err
	}
	id.role = r
	return id, true, nil
}

// AdminTokenPath is where `lifeline up` keeps the local operator's token.
func AdminTokenPath(dataDir string) string { return filepath.Join(dataDir, Dir, AdminTokenFile) }

// EnsureAdminToken makes sure the data directory holds a token of the
// approver role that the control store knows (AdminTokenName): the one
// already there, else a new one written to AdminTokenPath (mode 0600).
// It reports whether it made one.
func EnsureAdminToken(ctx context.Context, s *store.Store, dataDir string) (bool, error) {
	path := AdminTokenPath(dataDir)
	if b, err := os.ReadFile(path); err == nil {
		tok := strings.TrimSpace(string(b))
		all, err := s.Tokens(ctx)
		if err != nil {
			return false, err
		}
		if t, ok := all[AdminTokenName]; ok && t.SHA256 == Hash(tok) {
			return false, nil
		}
	}
	tok, _, err := CreateToken(ctx, s, AdminTokenName, Approver, "lifeline up", true)
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return false, err
	}
	if err := writeAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return false, err
	}
	return true, nil
}
