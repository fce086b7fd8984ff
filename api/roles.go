package api

import (
	"fmt"
	"strings"
)

// Role is what a token may do. Each role can do what the ones below it
// can.
type Role int

const (
	// Public routes need no token: the dashboard's static files, the
	// OpenAPI document, the health check and /metrics.
	Public Role = iota
	// Viewer reads: status, runbooks, routing, backups, alarms, reports.
	Viewer
	// Operator runs switchovers and failbacks, changes routing controls,
	// takes, verifies and restores backups.
	Operator
	// Approver approves or rejects region failovers and fails over by
	// hand; it can do what an operator can.
	Approver
)

// Roles lists the roles a token can have, weakest first.
var Roles = []Role{Viewer, Operator, Approver}

func (r Role) String() string {
	switch r {
	case Public:
		return "public"
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	case Approver:
		return "approver"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// ParseRole parses a token's role.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if r.String() == s {
			return r, nil
		}
	}
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = r.String()
	}
	return Public, fmt.Errorf("role %q: want one of %s", s, strings.Join(names, ", "))
}

// Allows reports whether a token of role r may call a route that needs need.
func (r Role) Allows(need Role) bool { return r >= need }
