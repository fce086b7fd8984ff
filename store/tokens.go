package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
)

// Token is an API token as stored: its name, role and the SHA-256 of the
// secret. The secret itself is shown once, when it is made, and kept
// nowhere.
type Token struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// SHA256 is the hex SHA-256 of the token string.
	SHA256    string    `json:"sha256"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

// ErrTokenExists is returned when a token of that name exists already.
var ErrTokenExists = errors.New("a token of that name exists (revoke it first, or choose another name)")

// CreateToken stores a token record, with its audit entry in the same
// transaction. It fails with ErrTokenExists when the name is taken, unless
// replace is set (a local topology's admin token made again by `up`).
func (s *Store) CreateToken(ctx context.Context, tok Token, replace bool) error {
	if tok.Name == "" || strings.ContainsAny(tok.Name, "/ \t\n") {
		return fmt.Errorf("token name %q: want a non-empty name without '/' or spaces", tok.Name)
	}
	b, err := json.Marshal(tok)
	if err != nil {
		return err
	}
	ak, av, err := s.auditOp(lifeline.AuditEntry{Time: tok.Created, Kind: "token", Step: tok.Name, Result: "created",
		Detail: "role " + tok.Role, Actor: tok.CreatedBy})
	if err != nil {
		return err
	}
	key := s.keys.Token(tok.Name)
	var conds []clientv3.Cmp
	if !replace {
		conds = append(conds, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
	}
	resp, err := s.cli.Txn(ctx).If(conds...).Then(clientv3.OpPut(key, string(b)), clientv3.OpPut(ak, av)).Commit()
	if err != nil {
		return fmt.Errorf("create token %s: %w", tok.Name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("create token %s: %w", tok.Name, ErrTokenExists)
	}
	return nil
}

// RevokeToken deletes a token, with its audit entry in the same
// transaction; found is false when there was no token of that name.
func (s *Store) RevokeToken(ctx context.Context, name, actor string) (found bool, err error) {
	key := s.keys.Token(name)
	ak, av, err := s.auditOp(lifeline.AuditEntry{Kind: "token", Step: name, Result: "revoked", Actor: actor})
	if err != nil {
		return false, err
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0)).
		Then(clientv3.OpDelete(key), clientv3.OpPut(ak, av)).
		Commit()
	if err != nil {
		return false, fmt.Errorf("revoke token %s: %w", name, err)
	}
	return resp.Succeeded, nil
}

// Tokens reads every token record, by name.
func (s *Store) Tokens(ctx context.Context) (map[string]Token, error) {
	return List[Token](ctx, s, s.keys.TokenPrefix())
}

// WatchTokens sends every token record to fn, as they are now and after
// every change, until ctx ends or the watch fails.
func (s *Store) WatchTokens(ctx context.Context, fn func(map[string]Token)) error {
	prefix := s.keys.TokenPrefix()
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("watch tokens: %w", err)
	}
	all := map[string]Token{}
	for _, kv := range resp.Kvs {
		var t Token
		if err := json.Unmarshal(kv.Value, &t); err != nil {
			return fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		all[strings.TrimPrefix(string(kv.Key), prefix)] = t
	}
	fn(copyTokens(all))
	wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch tokens: %w", err)
		}
		for _, ev := range wr.Events {
			name := strings.TrimPrefix(string(ev.Kv.Key), prefix)
			if ev.Type == clientv3.EventTypeDelete {
				delete(all, name)
				continue
			}
			var t Token
			if err := json.Unmarshal(ev.Kv.Value, &t); err != nil {
				return fmt.Errorf("decode %s: %w", ev.Kv.Key, err)
			}
			all[name] = t
		}
		fn(copyTokens(all))
	}
	return ctx.Err()
}

func copyTokens(m map[string]Token) map[string]Token {
	out := make(map[string]Token, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
